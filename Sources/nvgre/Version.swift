import NvgreDatapath

/// nvgre's own version (the second wave of the product). Not in main.swift:
/// its globals would be read before their line ran.
let nvgreVersion = "0.2.0"

/// `nvgre --version`: the version, the ABI and build of the embedded programs, libbpf's
/// version. Every command's configuration holds it: nothing here may cost.
var versionText: String {
    "nvgre \(nvgreVersion) (programs: ABI \(Datapath.embeddedABI), build \(Datapath.embeddedBuild); "
        + "libbpf \(Datapath.libbpfVersion))"
}
