import CommandLineArguments
import Foundation
import Tensor
import Llama

/// `--profile` (prune, eval) and `bench-gemm`: where the time goes, and how fast the BLAS is on the
/// same shapes in the same process.
enum ProfileReport {
    static let option = OptionSpec(
        name: "profile", valueName: nil,
        help: "Print to stderr, at the end, seconds, FLOP and GFLOP/s per phase, the GEMMs by shape, and the sgemm GFLOP/s of the same BLAS on the top shapes measured right after (about 0.5 s per shape), with the BLAS and kernel in use.")

    /// Starts recording when `--profile` was given.
    static func start(_ a: ParsedArguments) {
        if a.flag("profile") { Profile.enable() }
    }

    /// Prints the profile when recording.
    static func finish() {
        guard Profile.isEnabled else { return }
        var lines = ["profile  BLAS: \(BLASRuntime.current.summary)"]
        if Profile.gemmTotals.contains(where: { $0.0.bfloat16 }) { lines.append("compute: \(ComputePrecision.bfloat16.backend)") }
        lines.append("phase                        calls   seconds      GFLOP   GFLOP/s")
        let phases = Profile.phaseTotals
        for p in phases {
            lines.append("  " + pad(p.name) + String(format: " %6d %9.2f %10.1f %9.1f", p.calls, p.seconds, p.flops / 1e9, p.gflops))
        }
        let total = phases.reduce(0) { $0 + $1.seconds }
        lines.append("  " + pad("all phases") + String(format: "        %9.2f %10.1f", total, phases.reduce(0) { $0 + $1.flops } / 1e9))
        let top = Array(Profile.gemmTotals.prefix(6))
        if !top.isEmpty {
            let bench = GEMMBenchmark.run(top.map(\.0))
            lines.append("GEMM shape (m×n×k)           calls      GFLOP  in-run GFLOP/s  sgemm GFLOP/s (all workers, 1 thread)  in-run/sgemm")
            for ((shape, t), b) in zip(top, bench) {
                let head = "  " + pad(shape.label) + String(format: " %6d %10.1f", t.calls, t.flops / 1e9)
                let sgemm = String(format: " %14.1f %9.1f", b.gflops, b.singleThreadGflops)
                // Calls made on the project's workers (attention's per-group GEMMs) are not timed one by one:
                // their time is their phase's, so they get no in-run rate rather than a rate of zero.
                if t.seconds > 0 {
                    lines.append(head + String(format: " %15.1f", t.gflops) + sgemm
                                 + String(format: " %14.0f%%", 100 * t.gflops / max(b.gflops, 1e-9)))
                } else {
                    lines.append(head + "               –" + sgemm + "              –")
                }
            }
            if top.contains(where: { $0.1.seconds == 0 }) {
                lines.append("  (–: called on the workers, inside a phase such as attention, and timed only as that phase)")
            }
        }
        printError(lines.joined(separator: "\n"))
    }
}

/// `s` left-aligned in a column of 26 characters.
func pad(_ s: String) -> String { s.count >= 26 ? s : s + String(repeating: " ", count: 26 - s.count) }

enum BenchGEMMCommand {
    static let spec = CommandSpec(
        name: "bench-gemm",
        abstract: "sgemm GFLOP/s of this process's BLAS on a model's shapes (or given ones).",
        discussion: """
        Times each shape through the project's GEMM entry (split across the workers) and as one call on one
        thread, after printing the BLAS and the kernel in use. With --model, the shapes are the projections
        of one decoder block on --seqlen tokens (x·Wᵀ, as the forward pass calls them) and the head on 256
        rows (the evaluation's slab); --shapes gives them as m,n,k[,tA,tB] separated by ';' (row-major,
        C(m, n) = op(A)·op(B), tA/tB 0 or 1). With --compute-dtype bf16, a third column times the bf16 product
        of each shape (B rounded to bf16 once, A in every call; oneDNN where native).
        """,
        options: [
            OptionSpec(name: "model", valueName: "dir", help: "Checkpoint folder whose config.json gives the shapes."),
            OptionSpec(name: "seqlen", valueName: "n", help: "Tokens (rows) per block GEMM with --model.", defaultValue: "2048"),
            OptionSpec(name: "shapes", valueName: "list", help: "Shapes as m,n,k[,tA,tB];... (instead of --model)."),
            OptionSpec(name: "seconds", valueName: "s", help: "Timing per shape and mode.", defaultValue: "0.5"),
            OptionSpec(name: "compute-dtype", valueName: "type", help: "float32, or bf16 to time the bf16 product of each shape too.",
                       defaultValue: "float32"),
            OptionSpec(name: "json", valueName: nil, help: "Print one JSON object instead of text."),
        ],
        examples: [
            "llm-prune bench-gemm --model ../shared/models/stories260K --seqlen 512",
            "llm-prune bench-gemm --model /path/to/smollm2-hf --compute-dtype bf16",
            "llm-prune bench-gemm --shapes '2048,2048,2048;2048,576,576,0,1'",
        ])

    static func run(_ a: ParsedArguments) throws {
        var shapes: [Profile.GEMMShape] = []
        if let list = a.string("shapes") {
            for item in list.split(separator: ";") {
                let words = item.split(separator: ",")
                let f = words.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard f.count == words.count, f.count == 3 || f.count == 5,
                      f[0] >= 1, f[1] >= 1, f[2] >= 1, f.allSatisfy({ $0 <= 1 << 28 }), f[0] * f[1] <= 1 << 28, f[0] * f[2] <= 1 << 28, f[1] * f[2] <= 1 << 28 else {
                    throw UsageError("option '--shapes': '\(item)' is not m,n,k[,tA,tB] with positive sizes (each operand at most 2^28 values)")
                }
                shapes.append(Profile.GEMMShape(m: f[0], n: f[1], k: f[2], transA: f.count == 5 && f[3] != 0, transB: f.count == 5 && f[4] != 0))
            }
        } else if let model = a.string("model") {
            let c = try LlamaConfiguration(contentsOf: URL(fileURLWithPath: model).appendingPathComponent("config.json"))
            let t = try a.requiredInt("seqlen", range: 1...65_536)
            let q = c.numAttentionHeads * c.headDim, kv = c.numKeyValueHeads * c.headDim
            for (n, k) in [(q, c.hiddenSize), (kv, c.hiddenSize), (c.hiddenSize, q), (c.intermediateSize, c.hiddenSize), (c.hiddenSize, c.intermediateSize)] {
                shapes.append(Profile.GEMMShape(m: t, n: n, k: k, transA: false, transB: true))
            }
            shapes.append(Profile.GEMMShape(m: 256, n: c.vocabSize, k: c.hiddenSize, transA: false, transB: true))
        } else {
            throw UsageError("bench-gemm needs --model or --shapes")
        }
        guard let seconds = Double(try a.requiredString("seconds")), seconds > 0, seconds <= 60 else {
            throw UsageError("option '--seconds' must be a number in (0, 60]")
        }
        let bf16 = try ComputeDtypeOption.parse(a) == .bfloat16
        let results = GEMMBenchmark.run(shapes, seconds: seconds, bfloat16: bf16)
        if a.flag("json") {
            var object: [String: Any] = [
                "blas": Dictionary(uniqueKeysWithValues: BLASRuntime.current.record),
                "shapes": results.map { ["m": $0.shape.m, "n": $0.shape.n, "k": $0.shape.k, "trans_a": $0.shape.transA,
                                         "trans_b": $0.shape.transB, "gflops": $0.gflops, "single_thread_gflops": $0.singleThreadGflops,
                                         "bf16_gflops": $0.bfloat16Gflops.map { $0 as Any } ?? NSNull()] as [String: Any] },
            ]
            if bf16 { object["compute"] = ComputePrecision.bfloat16.backend }
            print(jsonLine(object))
            return
        }
        print("BLAS: \(BLASRuntime.current.summary)")
        if bf16 { print("compute: \(ComputePrecision.bfloat16.backend)") }
        print("shape (m×n×k)                 GFLOP/s all workers   GFLOP/s 1 thread" + (bf16 ? "   bf16 GFLOP/s all workers   bf16/float32" : ""))
        for r in results {
            var line = "  " + pad(r.shape.label) + String(format: " %18.1f %18.1f", r.gflops, r.singleThreadGflops)
            if let g = r.bfloat16Gflops { line += String(format: " %26.1f %13.2fx", g, g / max(r.gflops, 1e-9)) }
            print(line)
        }
    }
}
