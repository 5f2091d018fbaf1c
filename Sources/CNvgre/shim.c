/* shim.c - the C helpers declared in CNvgre.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/net_namespace.h>
#include <net/if.h>
#include <sys/socket.h>
#include "CNvgre.h"

struct nvgre *nv_open_other_object(const void *elf, size_t size, const struct bpf_object_open_opts *opts)
{
	struct nvgre *obj = calloc(1, sizeof(*obj));
	if (!obj) {
		errno = ENOMEM;
		return NULL;
	}
	int err = nvgre__create_skeleton(obj);
	if (!err) {
		/* The skeleton finds maps and programs by name: another build with the same ones fits. */
		obj->skeleton->data = elf;
		obj->skeleton->data_sz = size;
		err = bpf_object__open_skeleton(obj->skeleton, opts);
	}
	if (err) {
		nvgre__destroy(obj);
		errno = err < 0 ? -err : err;
		return NULL;
	}
	return obj;
}

int nv_setns_net(int fd)
{
	return setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno;
}

int nv_name_thread(const char *name)
{
	int rc = pthread_setname_np(pthread_self(), name);
	return rc == 0 ? 0 : -rc;
}

int nv_pin_thread_to_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

#define CAPTURE_BYTES (1 << 20)
static char capture_buf[CAPTURE_BYTES];
static size_t capture_len;
static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;

static int capture_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	pthread_mutex_lock(&capture_lock);
	if (capture_len < CAPTURE_BYTES - 1) {
		int n = vsnprintf(capture_buf + capture_len, CAPTURE_BYTES - capture_len, fmt, args);
		if (n > 0)
			capture_len += (size_t)n < CAPTURE_BYTES - capture_len ? (size_t)n
								     : CAPTURE_BYTES - 1 - capture_len;
	}
	pthread_mutex_unlock(&capture_lock);
	return 0;
}

void nv_libbpf_capture_start(void)
{
	libbpf_set_print(capture_print);
}

const char *nv_libbpf_capture_text(void)
{
	static char out[CAPTURE_BYTES];
	pthread_mutex_lock(&capture_lock);
	memcpy(out, capture_buf, capture_len);
	out[capture_len] = 0;
	capture_len = 0;
	pthread_mutex_unlock(&capture_lock);
	return out;
}

int nv_map_names(const char **names, int max)
{
	struct nvgre obj;
	memset(&obj, 0, sizeof(obj));
	if (nvgre__create_skeleton(&obj))
		return -ENOMEM;
	int n = 0;
	for (int i = 0; i < obj.skeleton->map_cnt && n < max; i++) {
		const char *name = obj.skeleton->maps[i].name; /* a string literal of the skeleton */
		if (!strchr(name, '.'))
			names[n++] = name;
	}
	bpf_object__destroy_skeleton(obj.skeleton);
	return n;
}

int nv_tap_open(const char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct ifreq req;
	memset(&req, 0, sizeof(req));
	strncpy(req.ifr_name, name, IFNAMSIZ - 1);
	req.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &req) != 0 ||
	    ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int nv_interface_mtu_mac(int sock, unsigned int ifindex, int *mtu, unsigned char mac[6])
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_ifindex = (int)ifindex;
	if (ioctl(sock, SIOCGIFNAME, &ifr) < 0)
		return -errno;
	if (ioctl(sock, SIOCGIFMTU, &ifr) < 0)
		return -errno;
	*mtu = ifr.ifr_mtu;
	if (ioctl(sock, SIOCGIFHWADDR, &ifr) < 0)
		return -errno;
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

int nv_interface_gro(int sock, unsigned int ifindex, int on, int *was)
{
	struct ifreq ifr;
	struct ethtool_value v;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_ifindex = (int)ifindex;
	if (ioctl(sock, SIOCGIFNAME, &ifr) < 0)
		return -errno;
	memset(&v, 0, sizeof(v));
	v.cmd = ETHTOOL_GGRO;
	ifr.ifr_data = (void *)&v;
	if (ioctl(sock, SIOCETHTOOL, &ifr) < 0)
		return -errno;
	*was = v.data != 0;
	if (on < 0 || (on != 0) == (*was != 0))
		return 0;
	v.cmd = ETHTOOL_SGRO;
	v.data = on != 0;
	if (ioctl(sock, SIOCETHTOOL, &ifr) < 0)
		return -errno;
	return 0;
}

/* One request and its one answer on a new NETLINK_ROUTE socket: the answer's length, or
 * -errno (the kernel's error for the request included). */
static int rtnl_ask(void *req, size_t reqlen, char *buf, size_t buflen)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int n = -1;
	if (sendto(fd, req, reqlen, 0, (struct sockaddr *)&sa, sizeof(sa)) >= 0)
		n = (int)recv(fd, buf, buflen, 0);
	int err = n < 0 ? -errno : 0;
	close(fd);
	if (err)
		return err;
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (!NLMSG_OK(h, (unsigned int)n))
		return -EIO;
	if (h->nlmsg_type == NLMSG_ERROR) {
		struct nlmsgerr *e = NLMSG_DATA(h);
		return e->error ? e->error : -EIO;
	}
	return n;
}

int nv_link_peer(unsigned int ifindex, int *peer, int *peer_nsid, int *xdp_attached, int *is_veth)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = {
		.h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST },
		.i = { .ifi_family = AF_UNSPEC, .ifi_index = (int)ifindex },
	};
	char buf[32768];
	int n = rtnl_ask(&req, sizeof(req), buf, sizeof(buf));
	if (n < 0)
		return n;
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	struct ifinfomsg *ifi = NLMSG_DATA(h);
	int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifi));
	*peer = 0;
	*peer_nsid = -1;
	*xdp_attached = 0;
	*is_veth = 0;
	for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type == IFLA_LINK)
			*peer = *(int *)RTA_DATA(a);
		else if (a->rta_type == IFLA_LINK_NETNSID)
			*peer_nsid = *(int *)RTA_DATA(a);
		else if (a->rta_type == IFLA_XDP) {
			/* Only a driver-mode program counts: a generic (skb) one gives a veth no NAPI. */
			int xlen = (int)RTA_PAYLOAD(a);
			for (struct rtattr *x = RTA_DATA(a); RTA_OK(x, xlen); x = RTA_NEXT(x, xlen)) {
				if (x->rta_type == IFLA_XDP_ATTACHED && *(unsigned char *)RTA_DATA(x) == XDP_ATTACHED_DRV)
					*xdp_attached = 1;
				if (x->rta_type == IFLA_XDP_DRV_PROG_ID && *(__u32 *)RTA_DATA(x) != 0)
					*xdp_attached = 1;
			}
		} else if (a->rta_type == IFLA_LINKINFO) {
			int ilen = (int)RTA_PAYLOAD(a);
			for (struct rtattr *x = RTA_DATA(a); RTA_OK(x, ilen); x = RTA_NEXT(x, ilen))
				if (x->rta_type == IFLA_INFO_KIND)
					*is_veth = strncmp((char *)RTA_DATA(x), "veth", RTA_PAYLOAD(x)) == 0;
		}
	}
	return 0;
}

int nv_netns_id(int nsfd)
{
	char req[NLMSG_SPACE(sizeof(struct rtgenmsg)) + RTA_SPACE(sizeof(int))];
	memset(req, 0, sizeof(req));
	struct nlmsghdr *h = (struct nlmsghdr *)req;
	h->nlmsg_len = sizeof(req);
	h->nlmsg_type = RTM_GETNSID;
	h->nlmsg_flags = NLM_F_REQUEST;
	((struct rtgenmsg *)NLMSG_DATA(h))->rtgen_family = AF_UNSPEC;
	struct rtattr *a = (struct rtattr *)(req + NLMSG_SPACE(sizeof(struct rtgenmsg)));
	a->rta_type = NETNSA_FD;
	a->rta_len = RTA_LENGTH(sizeof(int));
	*(int *)RTA_DATA(a) = nsfd;
	char buf[1024];
	int n = rtnl_ask(req, sizeof(req), buf, sizeof(buf));
	if (n < 0)
		return n;
	struct nlmsghdr *r = (struct nlmsghdr *)buf;
	int len = (int)r->nlmsg_len - (int)NLMSG_SPACE(sizeof(struct rtgenmsg));
	for (struct rtattr *x = (struct rtattr *)((char *)r + NLMSG_SPACE(sizeof(struct rtgenmsg))); RTA_OK(x, len);
	     x = RTA_NEXT(x, len))
		if (x->rta_type == NETNSA_NSID)
			return *(int *)RTA_DATA(x);
	return -ENOENT;
}
