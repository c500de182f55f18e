// The SafeTensors module: the `.safetensors` file format alone (Foundation only).
//
// Reading:
//   let checkpoint = try SafeTensorsCheckpoint(directory: modelFolder)   // one file or shards + index
//   let w = try checkpoint.floats("model.layers.0.self_attn.q_proj.weight")  // F32/F16/BF16/F64 → [Float]
//   let ids = try SafeTensorsFile(url: tokensFile).int64s("input_ids")      // integer dtypes → [Int64]
// Files are memory-mapped and validated strictly at open (header bounds, JSON, dtypes, shapes, offsets
// tiling the data section); tensors are converted one at a time, only when asked for.
//
// Writing:
//   try SafeTensorsWriter.write([TensorEntry(name: "w", dtype: .BF16, shape: [4, 8], data: .floats(values))],
//                               metadata: ["format": "pt"], to: url)
//   try SafeTensorsWriter.writeSharded(specs, shardOf: names, to: folder) { spec in .floats(...) }
// Each file goes to a temporary file beside the destination and is renamed into place.
//
// Every failure is a `SafeTensorsError` whose description is one line naming the file and tensor.
