# nvgre-xdp build. `make` builds the BPF object, its libbpf skeleton and the Swift package;
# `make test` sets the machine up and runs every test; `make demo` runs the demo (KEEP=1 leaves
# it up; `make demo-down` removes it).
SHELL := /bin/bash
BPF_CLANG ?= $(shell command -v clang-14 || command -v clang)
MULTIARCH := $(shell gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -I/usr/include/$(MULTIARCH)
GEN := Sources/CNvgre/generated
BPF_HEADERS := $(wildcard bpf/*.h)
SWIFT_BUILD_FLAGS ?=
# The Swift toolchain leaves TemporaryDirectory.* behind in $TMPDIR: keep them in .build.
export TMPDIR := $(CURDIR)/.build/tmp
$(shell mkdir -p $(TMPDIR))

.PHONY: all setup bpf build test differential isolation fuzz demo demo-down bench format clean install uninstall
all: build

setup:
	@scripts/setup.sh

$(GEN)/nvgre.bpf.o: bpf/nvgre.bpf.c $(BPF_HEADERS)
	@mkdir -p $(GEN)
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@

# The skeleton embeds the object, so the nvgre binary needs no file at run time.
$(GEN)/nvgre.skel.h: $(GEN)/nvgre.bpf.o
	bpftool gen skeleton $< name nvgre > $@.tmp
	mv $@.tmp $@

# Two more builds of the same programs, for the upgrade tests: build 2 (only its build number
# differs) and one of ABI 99 whose config map is wider (an upgrade to it is refused).
$(GEN)/nvgre-build2.bpf.o: bpf/nvgre.bpf.c $(BPF_HEADERS)
	@mkdir -p $(GEN)
	$(BPF_CLANG) $(BPF_CFLAGS) -DNV_PROGRAM_BUILD=2 -c $< -o $@

$(GEN)/nvgre-abi99.bpf.o: bpf/nvgre.bpf.c $(BPF_HEADERS)
	@mkdir -p $(GEN)
	$(BPF_CLANG) $(BPF_CFLAGS) -DNV_ABI_VERSION=99 -DNV_TEST_LAYOUT_CHANGE -c $< -o $@

# Bench-only builds, each leaving one part of a path out (bpf/ablation.h: N is its NV_ABLATE).
ABLATIONS := 1 2 3 4
$(GEN)/nvgre-ablate-%.bpf.o: bpf/nvgre.bpf.c $(BPF_HEADERS)
	@mkdir -p $(GEN)
	$(BPF_CLANG) $(BPF_CFLAGS) -DNV_ABLATE=$* -c $< -o $@

$(GEN)/bench.bpf.o: bpf/bench.bpf.c bpf/checksum.h
	@mkdir -p $(GEN)
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@

$(GEN)/bench.skel.h: $(GEN)/bench.bpf.o
	bpftool gen skeleton $< name nvbench > $@.tmp
	mv $@.tmp $@

bpf: $(GEN)/nvgre.skel.h $(GEN)/bench.skel.h $(GEN)/nvgre-build2.bpf.o $(GEN)/nvgre-abi99.bpf.o \
	$(foreach n,$(ABLATIONS),$(GEN)/nvgre-ablate-$(n).bpf.o)

build: setup bpf
	swift build $(SWIFT_BUILD_FLAGS)
	swift build $(SWIFT_BUILD_FLAGS) --product generate-manual

# `make install [PREFIX=/usr/local] [DESTDIR=] [CONFIG=release]`: the nvgre binary (the
# programs are inside it), its man page and shell completions (both generated from the
# argument parser), the systemd unit nvgre@.service, and in share/nvgre the unit's example
# environment file, the libvirt hook and the tshark dissector. /etc/nvgre is made, never
# filled or removed. BUILT=1 installs what is built already (the tests: CONFIG=debug BUILT=1,
# into a DESTDIR, while `swift test` holds the build folder).
PREFIX ?= /usr/local
CONFIG ?= release
BINDIR := $(PREFIX)/bin
SHAREDIR := $(PREFIX)/share
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALLED := $(BINDIR)/nvgre $(SHAREDIR)/man/man1/nvgre.1 $(SHAREDIR)/bash-completion/completions/nvgre \
  $(SHAREDIR)/zsh/site-functions/_nvgre $(SHAREDIR)/fish/vendor_completions.d/nvgre.fish \
  $(UNITDIR)/nvgre@.service $(SHAREDIR)/nvgre/example.env $(SHAREDIR)/nvgre/libvirt-qemu-hook \
  $(SHAREDIR)/nvgre/nvgre.lua

install:
ifneq ($(BUILT),1)
	scripts/setup.sh --build
	$(MAKE) bpf
	swift build -c $(CONFIG) --product nvgre
	swift build --product generate-manual
endif
	install -D -m 0755 .build/$(CONFIG)/nvgre $(DESTDIR)$(BINDIR)/nvgre
	@mkdir -p .build/man
	.build/debug/generate-manual .build/$(CONFIG)/nvgre --output-directory .build/man
	install -D -m 0644 .build/man/nvgre.1 $(DESTDIR)$(SHAREDIR)/man/man1/nvgre.1
	@mkdir -p $(DESTDIR)$(SHAREDIR)/bash-completion/completions $(DESTDIR)$(SHAREDIR)/zsh/site-functions \
	  $(DESTDIR)$(SHAREDIR)/fish/vendor_completions.d
	.build/$(CONFIG)/nvgre --generate-completion-script bash > $(DESTDIR)$(SHAREDIR)/bash-completion/completions/nvgre
	.build/$(CONFIG)/nvgre --generate-completion-script zsh > $(DESTDIR)$(SHAREDIR)/zsh/site-functions/_nvgre
	.build/$(CONFIG)/nvgre --generate-completion-script fish > $(DESTDIR)$(SHAREDIR)/fish/vendor_completions.d/nvgre.fish
	@mkdir -p $(DESTDIR)$(UNITDIR)
	sed 's|@BINDIR@|$(BINDIR)|g' contrib/systemd/nvgre@.service > $(DESTDIR)$(UNITDIR)/nvgre@.service
	install -D -m 0644 contrib/systemd/example.env $(DESTDIR)$(SHAREDIR)/nvgre/example.env
	sed 's|@BINDIR@|$(BINDIR)|g' contrib/libvirt/qemu-hook > $(DESTDIR)$(SHAREDIR)/nvgre/libvirt-qemu-hook
	chmod 0755 $(DESTDIR)$(SHAREDIR)/nvgre/libvirt-qemu-hook
	install -D -m 0644 contrib/nvgre.lua $(DESTDIR)$(SHAREDIR)/nvgre/nvgre.lua
	install -d -m 0755 $(DESTDIR)/etc/nvgre

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(SHAREDIR)/nvgre 2>/dev/null

test: build
	scripts/run-tests.sh

# The userspace decision core against the BPF programs, frame by frame, longer than the
# minute `make test` gives it: FRAMES (default 1,000,000) over POLICIES random policies
# (default 100); SEED replays a run that found a difference.
differential: build
	NVGRE_DIFF_FRAMES=$(or $(FRAMES),1000000) NVGRE_DIFF_POLICIES=$(or $(POLICIES),100) \
	  $(if $(SEED),NVGRE_DIFF_SEED=$(SEED)) scripts/run-tests.sh --filter DifferentialTests

# The isolation invariant over FRAMES frames (default 1,000,000) by test-run: no frame reaches
# another routing domain, leaves in a VSID its source may not use, or goes uncounted; SEED
# replays a run that found a violation.
isolation: build
	NVGRE_ISOLATION_FRAMES=$(or $(FRAMES),1000000) $(if $(SEED),NVGRE_ISOLATION_SEED=$(SEED)) \
	  scripts/run-tests.sh --filter IsolationInvariantTests

# libFuzzer on every reader of outside input (policy files, pcap, frames, NAT), FUZZ_SECONDS each
# (default 300); HARNESS picks one. A crash's input is kept and named (scripts/fuzz.sh).
fuzz: setup
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),300) $(HARNESS)

# The main job: tenants Red and Blue on hosts A and B over a bridge underlay, applied with
# the CLI from examples/demo, each claim checked with real traffic. DATAPATH=userspace puts
# every host on the userspace data path, DATAPATH=mixed A in XDP and B and G in userspace.
# STORE=etcd keeps the tables in a three-member etcd cluster on loopback that every host follows.
demo: build
	DATAPATH=$(or $(DATAPATH),xdp) STORE=$(or $(STORE),none) scripts/demo.sh $(if $(KEEP),--keep)

demo-down:
	scripts/lab-cleanup.sh nvdemo

# One run, one report: program cost (test-run), live 64-byte frames on one and two cores
# (bare reflector, encap and decap paths, kernel vxlan), 1k vs 1M records, the control
# plane. Prints a table; writes .build/bench/bench.json and bench.png. QUICK=1: under a
# minute. ONLY="live scale": some sections.
bench: setup bpf
	swift build -c release --product nvgre-lab
	swift build -c release --product nvgre
	scripts/in-lab.sh .build/release/nvgre-lab bench $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY))

# Lays the Swift code out with the toolchain's formatter and .swift-format (120 columns).
format:
	swift format -i -r Sources Tests Package.swift

clean:
	rm -rf $(GEN) .build
