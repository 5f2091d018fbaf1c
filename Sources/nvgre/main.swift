import ArgumentParser

/// `nvgre`: programs an NVGRE data path the way Hyper-V Network Virtualization is programmed
/// (lookup records, customer routes, provider addresses), with iproute2-style subcommands.
struct Nvgre: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nvgre",
        abstract: "NVGRE network virtualization on XDP: data path lifecycle, tenant policy, counters, tracing.",
        discussion:
            "Global options (-n NETNS, -j, --instance NAME, --store ADDRESSES, --host NAME) go before or after the "
            + "subcommand, as with `ip`.",
        version: versionText,
        subcommands: [
            Up.self, Down.self, Upgrade.self, Apply.self, Save.self, Show.self, Stats.self, Trace.self,
            DomainCommand.self, SubnetCommand.self, LookupCommand.self, RouteCommand.self,
            ProviderAddressCommand.self, PortCommand.self, ServiceCommand.self, MigrateCommand.self, HostsCommand.self,
            Agent.self,
            GatewayCommand.self,
            LibvirtHook.self,
            Check.self
        ])
}

/// `nvgre -n ns -j show` as `ip -n ns -j link`: global options written before the
/// subcommand are moved behind it, where the argument parser reads them.
func movingGlobalOptions(_ args: [String]) -> [String] {
    var leading: [String] = []
    var i = 0
    while i < args.count {
        switch args[i] {
        case "-j", "--json":
            leading.append(args[i])
            i += 1
        case "-n", "--netns", "--instance", "--store", "--host":
            leading.append(contentsOf: args[i..<min(i + 2, args.count)])
            i += 2
        default:
            return Array(args[i...]) + leading
        }
    }
    return leading
}

Nvgre.main(movingGlobalOptions(Array(CommandLine.arguments.dropFirst())))
