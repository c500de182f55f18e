import CommandLineArguments
import Tensor

/// `--compute-dtype` (prune, eval): the number format of the forward GEMMs.
enum ComputeDtypeOption {
    static let spec = OptionSpec(
        name: "compute-dtype", valueName: "type",
        help: "Number format of the forward GEMMs (calibration, Wanda++'s gradient pass, evaluation): float32, or bf16 (inputs rounded to bfloat16, float32 accumulation; in passes without a backward, attention's two products too; regional optimization, softmax, the scores and the written weights stay float32). bf16 runs oneDNN's AMX/AVX512-BF16 kernels where the CPU has them and libdnnl.so.2 is installed; elsewhere it is emulated: the same rounding, no speed-up. A note on stderr (and inspect) names which, with the instruction set oneDNN picked; oneDNN's ONEDNN_MAX_CPU_ISA is respected.",
        defaultValue: "float32")

    /// The chosen precision; with bf16 a note on stderr says how this machine runs it.
    static func parse(_ a: ParsedArguments, notice: (String) -> Void = { printError("note: \($0)") }) throws -> ComputePrecision {
        let p: ComputePrecision = try a.choice(spec.name, ["float32", "bf16"]) == "bf16" ? .bfloat16 : .float32
        if p == .bfloat16 { notice("compute: \(p.backend)") }
        return p
    }
}
