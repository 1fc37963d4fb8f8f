// The recurrent network (RNN/LSTM/GRU layers + Linear head): forward, loss, and full
// backpropagation through time over one flat parameter buffer.
//
// Dimension legend:
//   B  batch                       T  time steps              I  input features
//   H  hidden units                G  gates (RNN 1, LSTM 4 i,f,g,o, GRU 3 r,z,n)
//   L  layers                      O  head outputs (classes)  I_l layer input (I, then H)
//   N  = T*B rows of a time-major activation matrix: row t*B + b
//   R  head rows: B (last-step head) or N (per-step head)
//
// Public tensors follow PyTorch with batch_first=True: x (B, T, I), outputs (B, O) or
// (B, T, O), class ids (B) or (B, T), float targets (B, O) or (B, T, O); states are
// (L, B, H) like PyTorch's h0/c0 (not batch-first, as in PyTorch). Internally every
// activation is time-major so that one step's B rows are contiguous.
//
// A step reads as: transpose x, per layer one input-projection GEMM (N, I_l) x (I_l, G*H) and T
// recurrent GEMMs (B, H) x (H, G*H) each followed by a fused gate kernel, the head GEMM, the
// loss; backward: head GEMMs, per layer T recurrent GEMMs (B, G*H) x (G*H, H) with fused gate
// backward kernels, then dW_ih, dW_hh as one GEMM each over all N rows and dX for the layer below.
// W_hh is packed once per pass (GemmEngine's PackedMatrix) for its T recurrent products.
// Workspace: per layer about (G + 3) * N * H floats of activations, plus G * N * H (2G for
// GRU) + 2 * N * H shared gradient scratch: ~265 MB for LSTM L=2, H=512, T=100, B=64.

/// A recurrent state for every layer: h (L, B, H) and, for LSTM, c (L, B, H).
public struct RecurrentState: Equatable, Sendable {
    /// h: (L, B, H), layer-major like PyTorch's h_n.
    public var h: [Float]
    /// c: (L, B, H) for LSTM (PyTorch's c_n), nil for the other cells.
    public var c: [Float]?

    public init(h: [Float], c: [Float]? = nil) {
        self.h = h
        self.c = c
    }
}

/// Training targets of one batch, batch-first.
public enum Targets: Sendable {
    /// Class ids for cross-entropy: (B) with a last-step head, (B, T) with a per-step head.
    case classIds([Int32])
    /// Float targets for MSE: (B, O) with a last-step head, (B, T, O) with a per-step head.
    case values([Float])
}

/// The result of a forward pass: head outputs and the final recurrent state.
public struct Prediction: Equatable, Sendable {
    /// Logits (cross-entropy) or predictions (MSE): (B, O) or (B, T, O), batch-first.
    public var outputs: [Float]
    /// h_n (and c_n) after the last step: (L, B, H).
    public var finalState: RecurrentState
}

/// A batch whose sizes or values do not fit the model; the description names the tensor,
/// what was expected and what was found.
public struct ModelInputError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// 64-byte aligned float storage owned by the workspace (aligned so that large copies avoid
/// the 4 KiB-aliasing memcpy trap and SIMD loads do not straddle cache lines).
final class AlignedBuffer {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}

/// Activations and scratch buffers for batches up to (batch, steps); allocated once and reused
/// by every step whose shape fits, so a steady-state training step allocates nothing.
final class Workspace {
    let batch: Int
    let steps: Int
    /// Per layer: gates (N, G*H); RNN pre-activations, LSTM i,f,g,o / GRU r,z,n activations;
    /// after backward, the gate gradients dGx.
    let gates: [AlignedBuffer]
    /// Per layer: h (T+1, B, H), h[0] = h0, h[t+1] the output of step t.
    let hs: [AlignedBuffer]
    /// Per layer (LSTM): c (T+1, B, H), c[0] = c0; tanh(c) (T, B, H).
    let cs: [AlignedBuffer]
    let tanhC: [AlignedBuffer]
    /// Per layer (GRU): hn = h_prev W_hn^T + b_hn, (T, B, H).
    let hn: [AlignedBuffer]
    /// x transposed to time-major (T, B, I).
    let xT: AlignedBuffer
    /// GRU recurrent product of one step (B, 3H).
    let hh: AlignedBuffer
    /// GRU: gate gradients seen by W_hh/b_hh (N, G*H). (Those seen by W_ih/b_ih/input, dGx,
    /// overwrite a layer's `gates` in backward.)
    let dGh: AlignedBuffer
    /// Output gradients of a layer and of the layer below (N, H), used in turn.
    let dA: AlignedBuffer
    let dB: AlignedBuffer
    /// Carries to step t-1: dh, dc (B, H).
    let dhCarry: AlignedBuffer
    let dcCarry: AlignedBuffer
    /// Head: logits (R, O) and their gradients (R, O).
    let logits: AlignedBuffer
    let dLogits: AlignedBuffer
    /// Gate bias row (G*H) the cell kernels add to the gate products.
    let biasRow: AlignedBuffer
    /// A layer's bias gradient, summed by the backward cell kernels: G*H, and for the GRU
    /// another H for b_hn (whose gradient differs from b_in's).
    let dBias: AlignedBuffer
    /// dW_ih^T (I, G*H) of layer 0 when I is narrower than a GEMM register tile.
    let weightGradientT: AlignedBuffer
    /// B*H zeros, never written: the top layer's output gradient at steps other than the
    /// last under a last-step head (instead of zero-filling (T-1)*B*H floats per step).
    let zeroRows: AlignedBuffer
    /// Gradients of the initial state, (L, B, H) each.
    let dh0: AlignedBuffer
    let dc0: AlignedBuffer

    init(config: ModelConfig, batch: Int, steps: Int) {
        self.batch = batch
        self.steps = steps
        let H = config.hiddenSize, GH = config.cell.gateCount * H, L = config.layers
        let N = batch * steps
        let isLSTM = config.cell == .lstm, isGRU = config.cell == .gru
        gates = (0..<L).map { _ in AlignedBuffer(count: N * GH) }
        hs = (0..<L).map { _ in AlignedBuffer(count: (steps + 1) * batch * H) }
        cs = isLSTM ? (0..<L).map { _ in AlignedBuffer(count: (steps + 1) * batch * H) } : []
        tanhC = isLSTM ? (0..<L).map { _ in AlignedBuffer(count: N * H) } : []
        hn = isGRU ? (0..<L).map { _ in AlignedBuffer(count: N * H) } : []
        xT = AlignedBuffer(count: N * config.inputSize)
        hh = AlignedBuffer(count: isGRU ? batch * GH : 0)
        dGh = AlignedBuffer(count: isGRU ? N * GH : 0)
        dA = AlignedBuffer(count: N * H)
        dB = AlignedBuffer(count: L > 1 ? N * H : 0)
        dhCarry = AlignedBuffer(count: batch * H)
        dcCarry = AlignedBuffer(count: batch * H)
        let headRows = config.head == .lastStep ? batch : N
        logits = AlignedBuffer(count: headRows * config.outputSize)
        dLogits = AlignedBuffer(count: headRows * config.outputSize)
        biasRow = AlignedBuffer(count: GH)
        dBias = AlignedBuffer(count: isGRU ? GH + H : GH)
        weightGradientT = AlignedBuffer(count: config.inputSize < RNNNetwork.narrowInput ? config.inputSize * GH : 0)
        zeroRows = AlignedBuffer(count: config.head == .lastStep ? batch * H : 0)
        dh0 = AlignedBuffer(count: L * batch * H)
        dc0 = AlignedBuffer(count: isLSTM ? L * batch * H : 0)
    }
}

/// Offsets of one layer's tensors in the flat buffer.
struct LayerOffsets {
    var weightIH: Int
    var weightHH: Int
    var biasIH: Int
    var biasHH: Int
    var inputs: Int
}

/// A reusable network for one `ModelConfig`: it owns the workspace (grown to the largest
/// (batch, steps) seen, then reused) and a `GemmEngine`, and works on caller-owned flat
/// buffers laid out by `table`. Not thread-safe: one network per thread of control.
///
/// Data-parallel use: each worker calls `accumulateGradients` on its shard (gradient of the
/// loss SUM), all-reduces the gradient and the `LossStats`, divides the gradient by the
/// global `scoredCount`, then calls `AdamOptimizer.step`:
///
/// ```swift
/// let network = try RNNNetwork(config: model, threads: 1)
/// var parameters = ParameterTable.initialParameters(config: model, seed: 42)
/// var optimizer = AdamOptimizer(config: OptimizerConfig(kind: .adam, lr: 1e-3), parameterCount: parameters.count)
/// var gradient = [Float](repeating: 0, count: parameters.count)
/// // one step: zero, accumulate this shard's sum, all-reduce, mean, update
/// for i in gradient.indices { gradient[i] = 0 }
/// var stats = try network.accumulateGradients(parameters: parameters, input: x, batch: b, steps: t,
///                                             targets: .classIds(y), gradient: &gradient)
/// // ... all-reduce `gradient` and `stats` across workers ...
/// for i in gradient.indices { gradient[i] /= Float(stats.scoredCount) }
/// optimizer.step(parameters: &parameters, gradient: &gradient)
/// ```
///
/// Buffers: the workspace is allocated on the first call and whenever a larger (batch, steps)
/// arrives; the packed recurrent weights and the GEMM packing buffers likewise grow once. A
/// steady-state training step allocates nothing (checked under valgrind with
/// `rnn-bench train --steps N`: the heap allocation count does not depend on N).
public final class RNNNetwork {
    public let config: ModelConfig
    public let table: ParameterTable
    /// Threads a single large GEMM may be split across (1 = the calling thread only).
    public var threads: Int {
        get { engine.threads }
        set { engine.threads = max(1, newValue) }
    }

    private let engine: GemmEngine
    /// Per layer, W_hh packed once per pass for the T recurrent products: forward as
    /// op(B) = W_hh^T (H, G*H), backward as op(B) = W_hh (G*H, H).
    private let packedRecurrent: [PackedMatrix]
    private let packedRecurrentBackward: [PackedMatrix]
    private let layerOffsets: [LayerOffsets]
    private let headWeight: Int
    private let headBias: Int
    /// The activation and scratch buffers, created on first use and replaced only when a larger
    /// (batch, steps) shape arrives (internal so tests can check it is reused).
    private(set) var workspace: Workspace?
    /// Shape of the last forward pass (what `finalState` and `initialStateGradient` describe).
    private var lastBatch = 0
    private var lastSteps = 0
    private var hasGradientOfInitialState = false
    /// Whether the last forward pass started from a caller-given state (else from zeros, and
    /// the products with h0 = 0 are skipped).
    private var hasInitialState = false

    /// A network for `config`, splitting large GEMMs across `threads` threads.
    public init(config: ModelConfig, threads: Int = 1) throws(ConfigError) {
        try config.validate()
        guard threads >= 1 else { throw ConfigError("threads must be at least 1, found \(threads)") }
        self.config = config
        let table = ParameterTable(config: config)
        self.table = table
        self.engine = GemmEngine(threads: threads)
        func offset(_ name: String) -> Int {
            guard let entry = table.entry(named: name) else { preconditionFailure("parameter table lacks \(name)") }
            return entry.offset
        }
        layerOffsets = (0..<config.layers).map { l in
            LayerOffsets(weightIH: offset("rnn.weight_ih_l\(l)"), weightHH: offset("rnn.weight_hh_l\(l)"),
                         biasIH: offset("rnn.bias_ih_l\(l)"), biasHH: offset("rnn.bias_hh_l\(l)"),
                         inputs: l == 0 ? config.inputSize : config.hiddenSize)
        }
        headWeight = offset("fc.weight")
        headBias = offset("fc.bias")
        packedRecurrent = (0..<config.layers).map { _ in PackedMatrix() }
        packedRecurrentBackward = (0..<config.layers).map { _ in PackedMatrix() }
    }

    // MARK: Public entry points

    /// Forward, loss and backward on one batch (or shard). ADDS to `gradient` (laid out by
    /// `table`) the gradient of the loss SUM over the scored elements, and returns the sum,
    /// the count and the correct predictions. Two shards accumulated into one buffer give the
    /// gradient of the concatenated batch. Allocation-free once the workspace fits the shape.
    ///
    /// - Parameters:
    ///   - parameters: the flat parameters, `table.totalCount` values.
    ///   - input: x (B, T, I), batch-first.
    ///   - targets: class ids or float values (see `Targets`) matching `config.loss`/`head`.
    ///   - initialState: h0 (and c0 for LSTM), (L, B, H); nil means zeros.
    ///   - gradient: the flat gradient, `table.totalCount` values, accumulated into.
    public func accumulateGradients(
        parameters: [Float], input: [Float], batch: Int, steps: Int, targets: Targets,
        initialState: RecurrentState? = nil, gradient: inout [Float]
    ) throws(ModelInputError) -> LossStats {
        try validate(parameters: parameters.count, input: input.count, batch: batch, steps: steps,
                     targets: targets, initialState: initialState)
        guard gradient.count == table.totalCount else {
            throw ModelInputError("gradient buffer must hold \(table.totalCount) values, found \(gradient.count)")
        }
        return parameters.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                gradient.withUnsafeMutableBufferPointer { g in
                    run(parameters: p.baseAddress!, input: x.baseAddress!, batch: batch, steps: steps,
                        targets: targets, initialState: initialState, scale: 1, gradient: g.baseAddress!)
                }
            }
        }
    }

    /// The same step on unsafe buffers (for callers that keep the flat buffers in their own
    /// storage, e.g. a bucketed all-reduce); the pointers are only used during the call.
    public func accumulateGradients(
        parameters: UnsafeBufferPointer<Float>, input: UnsafeBufferPointer<Float>, batch: Int, steps: Int,
        targets: Targets, initialState: RecurrentState? = nil, gradient: UnsafeMutableBufferPointer<Float>
    ) throws(ModelInputError) -> LossStats {
        try validate(parameters: parameters.count, input: input.count, batch: batch, steps: steps,
                     targets: targets, initialState: initialState)
        guard gradient.count == table.totalCount, let g = gradient.baseAddress else {
            throw ModelInputError("gradient buffer must hold \(table.totalCount) values, found \(gradient.count)")
        }
        return run(parameters: parameters.baseAddress!, input: input.baseAddress!, batch: batch, steps: steps,
                   targets: targets, initialState: initialState, scale: 1, gradient: g)
    }

    /// PyTorch-style convenience: the mean loss (`stats.meanLoss`) and a fresh gradient of the
    /// MEAN loss, as `loss.backward()` on a mean-reduced loss produces. Allocates the gradient.
    /// The initial-state gradient of the mean is available afterwards from `initialStateGradient()`.
    public func meanLossAndGradient(
        parameters: [Float], input: [Float], batch: Int, steps: Int, targets: Targets,
        initialState: RecurrentState? = nil
    ) throws(ModelInputError) -> (stats: LossStats, gradient: [Float]) {
        try validate(parameters: parameters.count, input: input.count, batch: batch, steps: steps,
                     targets: targets, initialState: initialState)
        var gradient = [Float](repeating: 0, count: table.totalCount)
        let scale = 1 / Float(scoredCount(batch: batch, steps: steps))
        let stats = parameters.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                gradient.withUnsafeMutableBufferPointer { g in
                    run(parameters: p.baseAddress!, input: x.baseAddress!, batch: batch, steps: steps,
                        targets: targets, initialState: initialState, scale: scale, gradient: g.baseAddress!)
                }
            }
        }
        return (stats, gradient)
    }

    /// Forward and loss only (validation): loss sum, scored count and correct predictions.
    public func evaluate(
        parameters: [Float], input: [Float], batch: Int, steps: Int, targets: Targets,
        initialState: RecurrentState? = nil
    ) throws(ModelInputError) -> LossStats {
        try validate(parameters: parameters.count, input: input.count, batch: batch, steps: steps,
                     targets: targets, initialState: initialState)
        return parameters.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                run(parameters: p.baseAddress!, input: x.baseAddress!, batch: batch, steps: steps,
                    targets: targets, initialState: initialState, scale: 1, gradient: nil)
            }
        }
    }

    /// Inference: the head outputs (B, O) or (B, T, O) and the final state, like
    /// `out, hidden = model(x, hidden)` in PyTorch.
    public func predict(
        parameters: [Float], input: [Float], batch: Int, steps: Int, initialState: RecurrentState? = nil
    ) throws(ModelInputError) -> Prediction {
        try validate(parameters: parameters.count, input: input.count, batch: batch, steps: steps,
                     targets: nil, initialState: initialState)
        prepare(batch: batch, steps: steps, initialState: initialState)
        parameters.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                forward(p.baseAddress!, x.baseAddress!, batch: batch, steps: steps)
            }
        }
        let ws = workspace!
        let O = config.outputSize
        var outputs = [Float](repeating: 0, count: (config.head == .lastStep ? batch : batch * steps) * O)
        if config.head == .lastStep {
            for i in 0..<outputs.count { outputs[i] = ws.logits.pointer[i] }
        } else {
            for t in 0..<steps {
                for b in 0..<batch {
                    for k in 0..<O { outputs[(b * steps + t) * O + k] = ws.logits.pointer[(t * batch + b) * O + k] }
                }
            }
        }
        return Prediction(outputs: outputs, finalState: finalState())
    }

    /// h_n (and c_n) of the last forward pass, (L, B, H).
    public func finalState() -> RecurrentState {
        guard let ws = workspace, lastBatch > 0 else { return RecurrentState(h: []) }
        let H = config.hiddenSize, B = lastBatch, T = lastSteps
        var h = [Float](repeating: 0, count: config.layers * B * H)
        var c: [Float]? = config.cell == .lstm ? h : nil
        for l in 0..<config.layers {
            for i in 0..<(B * H) {
                h[l * B * H + i] = ws.hs[l].pointer[T * B * H + i]
                c?[l * B * H + i] = config.cell == .lstm ? ws.cs[l].pointer[T * B * H + i] : 0
            }
        }
        return RecurrentState(h: h, c: c)
    }

    /// The gradient of the last backward pass with respect to the caller-given initial state h0
    /// (and c0), (L, B, H), scaled like the parameter gradient (sum or mean). Empty before any
    /// backward and when the last pass started from zeros (no initial state given).
    public func initialStateGradient() -> RecurrentState {
        guard let ws = workspace, hasGradientOfInitialState else { return RecurrentState(h: []) }
        let n = config.layers * lastBatch * config.hiddenSize
        let h = Array(UnsafeBufferPointer(start: ws.dh0.pointer, count: n))
        let c = config.cell == .lstm ? Array(UnsafeBufferPointer(start: ws.dc0.pointer, count: n)) : nil
        return RecurrentState(h: h, c: c)
    }

    /// Elements the loss averages over for a batch of this shape.
    public func scoredCount(batch: Int, steps: Int) -> Int {
        let rows = config.head == .lastStep ? batch : batch * steps
        return config.loss == .crossEntropy ? rows : rows * config.outputSize
    }

    /// Floating-point operations of one training step (forward 2*B*(I_l+H)*G*H*T per layer,
    /// backward twice that), the count the benchmarks report GFLOP/s against.
    public func trainingFlops(batch: Int, steps: Int) -> Double {
        let GH = Double(config.cell.gateCount * config.hiddenSize)
        var forward = 0.0
        for l in 0..<config.layers {
            let inputs = Double(l == 0 ? config.inputSize : config.hiddenSize)
            forward += 2 * Double(batch) * (inputs + Double(config.hiddenSize)) * GH * Double(steps)
        }
        return 3 * forward
    }

    /// Inputs narrower than this take the transposed dW_ih product (see `backward`).
    static let narrowInput = 16

    // MARK: Validation

    private func validate(
        parameters: Int, input: Int, batch B: Int, steps T: Int, targets: Targets?, initialState: RecurrentState?
    ) throws(ModelInputError) {
        let I = config.inputSize, H = config.hiddenSize, L = config.layers, O = config.outputSize
        guard B >= 1 else { throw ModelInputError("batch size must be at least 1, found \(B)") }
        guard T >= 1 else { throw ModelInputError("sequence length must be at least 1, found \(T)") }
        guard parameters == table.totalCount else {
            throw ModelInputError("parameters must hold \(table.totalCount) values for this model, found \(parameters)")
        }
        guard input == B * T * I else {
            throw ModelInputError("input x must be (B=\(B), T=\(T), I=\(I)) = \(B * T * I) values, found \(input)")
        }
        if let state = initialState {
            guard state.h.count == L * B * H else {
                throw ModelInputError("initial state h0 must be (L=\(L), B=\(B), H=\(H)) = \(L * B * H) values, found \(state.h.count)")
            }
            if config.cell == .lstm {
                guard let c = state.c else { throw ModelInputError("an LSTM initial state needs c0 as well as h0") }
                guard c.count == L * B * H else {
                    throw ModelInputError("initial state c0 must be (L=\(L), B=\(B), H=\(H)) = \(L * B * H) values, found \(c.count)")
                }
            } else if state.c != nil {
                throw ModelInputError("initial state has c0 but a \(config.cell.rawValue) cell has no cell state")
            }
        }
        guard let targets else { return }
        let rows = config.head == .lastStep ? B : B * T
        let shape = config.head == .lastStep ? "(B=\(B))" : "(B=\(B), T=\(T))"
        switch (config.loss, targets) {
        case (.crossEntropy, .classIds(let ids)):
            guard ids.count == rows else {
                throw ModelInputError("class ids must be \(shape) = \(rows) values, found \(ids.count)")
            }
            for (i, id) in ids.enumerated() where id < 0 || Int(id) >= O {
                throw ModelInputError("class id \(id) at index \(i) is outside [0, \(O))")
            }
        case (.mse, .values(let values)):
            let valueShape = config.head == .lastStep ? "(B=\(B), O=\(O))" : "(B=\(B), T=\(T), O=\(O))"
            guard values.count == rows * O else {
                throw ModelInputError("float targets must be \(valueShape) = \(rows * O) values, found \(values.count)")
            }
        case (.crossEntropy, .values):
            throw ModelInputError("cross-entropy needs integer class ids, found float targets")
        case (.mse, .classIds):
            throw ModelInputError("MSE needs float targets, found integer class ids")
        }
    }

    // MARK: Step

    /// Sizes the workspace for (batch, steps) (reused when it fits) and loads h0/c0.
    private func prepare(batch B: Int, steps T: Int, initialState: RecurrentState?) {
        if let ws = workspace, ws.batch >= B, ws.steps >= T {
            // Fits: reuse.
        } else {
            let b = max(B, workspace?.batch ?? 0), t = max(T, workspace?.steps ?? 0)
            workspace = Workspace(config: config, batch: b, steps: t)
        }
        let ws = workspace!
        let n = B * config.hiddenSize
        for l in 0..<config.layers {
            if let state = initialState {
                state.h.withUnsafeBufferPointer { h in ws.hs[l].pointer.update(from: h.baseAddress! + l * n, count: n) }
                if let c = state.c {
                    c.withUnsafeBufferPointer { c in ws.cs[l].pointer.update(from: c.baseAddress! + l * n, count: n) }
                }
            } else {
                ws.hs[l].pointer.update(repeating: 0, count: n)
                if config.cell == .lstm { ws.cs[l].pointer.update(repeating: 0, count: n) }
            }
        }
        lastBatch = B
        lastSteps = T
        hasInitialState = initialState != nil
        hasGradientOfInitialState = false
    }

    private func run(
        parameters p: UnsafePointer<Float>, input x: UnsafePointer<Float>, batch B: Int, steps T: Int,
        targets: Targets, initialState: RecurrentState?, scale: Float, gradient: UnsafeMutablePointer<Float>?
    ) -> LossStats {
        prepare(batch: B, steps: T, initialState: initialState)
        forward(p, x, batch: B, steps: T)
        let ws = workspace!
        let rows = config.head == .lastStep ? B : B * T
        let O = config.outputSize
        let lastStep = config.head == .lastStep
        let targetIndex = TargetRows(perStep: !lastStep, batch: B, steps: T)
        let dLogits = gradient == nil ? nil : ws.dLogits.pointer
        let stats: LossStats
        switch targets {
        case .classIds(let ids):
            stats = ids.withUnsafeBufferPointer { ids in
                LossKernels.crossEntropy(logits: ws.logits.pointer, rows: rows, classes: O, ids: ids.baseAddress!,
                                         targetIndex: targetIndex, scale: scale, dLogits: dLogits)
            }
        case .values(let values):
            stats = values.withUnsafeBufferPointer { v in
                LossKernels.meanSquaredError(predictions: ws.logits.pointer, rows: rows, outputs: O,
                                             targets: v.baseAddress!, targetIndex: targetIndex, scale: scale,
                                             dLogits: dLogits)
            }
        }
        if let gradient {
            backward(p, gradient, batch: B, steps: T)
            hasGradientOfInitialState = hasInitialState
        }
        return stats
    }

    @inline(__always)
    private func gemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        engine.multiply(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1,
                        a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// Forward through every layer and the head; leaves activations in the workspace and the
    /// head outputs in `logits` (R, O), time-major rows for a per-step head.
    private func forward(_ p: UnsafePointer<Float>, _ x: UnsafePointer<Float>, batch B: Int, steps T: Int) {
        let ws = workspace!
        let I = config.inputSize, H = config.hiddenSize, O = config.outputSize
        let GH = config.cell.gateCount * H
        let N = B * T
        let BH = B * H
        // x (B, T, I) -> xT (T, B, I).
        for b in 0..<B {
            for t in 0..<T {
                (ws.xT.pointer + (t * B + b) * I).update(from: x + (b * T + t) * I, count: I)
            }
        }
        for l in 0..<config.layers {
            let o = layerOffsets[l]
            let input = l == 0 ? UnsafePointer(ws.xT.pointer) : UnsafePointer(ws.hs[l - 1].pointer + BH)
            let gates = ws.gates[l].pointer
            let hs = ws.hs[l].pointer
            // Bias row: b_ih + b_hh, except the GRU's b_hn, which sits inside r * (W_hn h + b_hn).
            // The cell kernels add it to the gates as they read them.
            let bias = ws.biasRow.pointer
            let keepHH = config.cell == .gru ? 2 * H : GH
            for k in 0..<GH { bias[k] = p[o.biasIH + k] + (k < keepHH ? p[o.biasHH + k] : 0) }
            // Input projection of all steps: gates (N, GH) = X_l (N, I_l) W_ih^T.
            gemm(false, true, N, GH, o.inputs, input, o.inputs, p + o.weightIH, o.inputs, 0, gates, GH)
            let whh = p + o.weightHH
            let packed = packedRecurrent[l]
            packed.pack(transB: true, k: H, n: GH, b: whh, ldb: H)
            for t in 0..<T {
                let hPrev = UnsafePointer(hs + t * BH)
                let hOut = hs + (t + 1) * BH
                let g = gates + t * B * GH
                // h0 = 0 (no initial state): the recurrent product of step 0 is zero.
                let recurrent = t > 0 || hasInitialState
                switch config.cell {
                case .rnnTanh, .rnnRelu:
                    if recurrent { engine.multiply(transA: false, m: B, a: hPrev, lda: H, packedB: packed, beta: 1, c: g, ldc: GH) }
                    CellKernels.rnnForward(relu: config.cell == .rnnRelu, pre: g, bias: bias, h: hOut, batch: B, hidden: H)
                case .lstm:
                    if recurrent { engine.multiply(transA: false, m: B, a: hPrev, lda: H, packedB: packed, beta: 1, c: g, ldc: GH) }
                    let cs = ws.cs[l].pointer
                    CellKernels.lstmForward(gates: g, bias: bias, cPrev: cs + t * BH, c: cs + (t + 1) * BH,
                                            tanhC: ws.tanhC[l].pointer + t * BH, h: hOut, batch: B, hidden: H)
                case .gru:
                    if recurrent {
                        engine.multiply(transA: false, m: B, a: hPrev, lda: H, packedB: packed, beta: 0, c: ws.hh.pointer, ldc: GH)
                    } else {
                        ws.hh.pointer.update(repeating: 0, count: B * GH)
                    }
                    CellKernels.gruForward(gates: g, bias: bias, hh: ws.hh.pointer, biasHN: p + o.biasHH + 2 * H, hPrev: hPrev,
                                           hn: ws.hn[l].pointer + t * BH, h: hOut, batch: B, hidden: H)
                }
            }
        }
        // Head: logits (R, O) = h (R, H) fc.weight^T + fc.bias.
        let top = ws.hs[config.layers - 1].pointer
        let lastStep = config.head == .lastStep
        let headInput = UnsafePointer(lastStep ? top + T * BH : top + BH)
        let rows = lastStep ? B : N
        for r in 0..<rows { (ws.logits.pointer + r * O).update(from: p + headBias, count: O) }
        gemm(false, true, rows, O, H, headInput, H, p + headWeight, H, 1, ws.logits.pointer, O)
    }

    /// Backward from `dLogits` (R, O) through the head and every layer; accumulates into `g`
    /// and leaves dh0/dc0 in the workspace.
    private func backward(_ p: UnsafePointer<Float>, _ g: UnsafeMutablePointer<Float>, batch B: Int, steps T: Int) {
        let ws = workspace!
        let H = config.hiddenSize, O = config.outputSize, L = config.layers
        let GH = config.cell.gateCount * H
        let N = B * T
        let BH = B * H
        let lastStep = config.head == .lastStep
        let rows = lastStep ? B : N
        let top = ws.hs[L - 1].pointer
        let headInput = UnsafePointer(lastStep ? top + T * BH : top + BH)
        let dLogits = UnsafePointer(ws.dLogits.pointer)
        // Head: d fc.weight (O, H) += dLogits^T (O, R) h (R, H); d fc.bias += column sums.
        gemm(true, false, O, H, rows, dLogits, O, headInput, H, 1, g + headWeight, H)
        addColumnSums(dLogits, rows: rows, columns: O, into: g + headBias)
        // dOut (N, H): gradient of the top layer's outputs.
        var dOut = ws.dA.pointer
        var dBelow = ws.dB.pointer
        if lastStep {
            // Only step T-1 of dOut is written; the other steps read `zeroRows` (below).
            gemm(false, false, B, H, O, dLogits, O, p + headWeight, H, 0, dOut + (T - 1) * BH, H)
        } else {
            gemm(false, false, N, H, O, dLogits, O, p + headWeight, H, 0, dOut, H)
        }
        let dhCarry = ws.dhCarry.pointer
        let dcCarry = ws.dcCarry.pointer
        for l in stride(from: L - 1, through: 0, by: -1) {
            let o = layerOffsets[l]
            let hs = UnsafePointer(ws.hs[l].pointer)
            let gates = UnsafePointer(ws.gates[l].pointer)
            // The gate gradients dGx (N, GH) overwrite the gate activations step by step: the
            // backward kernels read each chunk of step t's gates before writing its gradient,
            // and nothing reads the activations afterwards. (One buffer less, 6.5 MB for one of
            // two lstm-med workers, and no separate stream of writes.)
            let dGx = ws.gates[l].pointer
            let packed = packedRecurrentBackward[l]
            packed.pack(transB: false, k: GH, n: H, b: p + o.weightHH, ldb: H)
            dhCarry.update(repeating: 0, count: BH)
            dcCarry.update(repeating: 0, count: BH)
            let dBias = ws.dBias.pointer
            dBias.update(repeating: 0, count: ws.dBias.count)
            for t in stride(from: T - 1, through: 0, by: -1) {
                let dOutT = lastStep && l == L - 1 && t < T - 1 ? UnsafePointer(ws.zeroRows.pointer) : UnsafePointer(dOut + t * BH)
                let dG = dGx + t * B * GH
                // The gradient reaching h0 is needed only for a caller-given initial state.
                let recurrent = t > 0 || hasInitialState
                switch config.cell {
                case .rnnTanh, .rnnRelu:
                    CellKernels.rnnBackward(relu: config.cell == .rnnRelu, h: hs + (t + 1) * BH, dOut: dOutT,
                                            carry: dhCarry, dPre: dG, dBias: dBias, batch: B, hidden: H)
                    if recurrent { engine.multiply(transA: false, m: B, a: dG, lda: GH, packedB: packed, beta: 0, c: dhCarry, ldc: H) }
                case .lstm:
                    CellKernels.lstmBackward(gates: gates + t * B * GH, cPrev: ws.cs[l].pointer + t * BH,
                                             tanhC: ws.tanhC[l].pointer + t * BH, dOut: dOutT, dhCarry: dhCarry,
                                             dcCarry: dcCarry, dGates: dG, dBias: dBias, batch: B, hidden: H)
                    if recurrent { engine.multiply(transA: false, m: B, a: dG, lda: GH, packedB: packed, beta: 0, c: dhCarry, ldc: H) }
                case .gru:
                    let dGhT = ws.dGh.pointer + t * B * GH
                    CellKernels.gruBackward(gates: gates + t * B * GH, hn: ws.hn[l].pointer + t * BH,
                                            hPrev: hs + t * BH, dOut: dOutT, dhCarry: dhCarry,
                                            dGx: dG, dGh: dGhT, dBias: dBias, batch: B, hidden: H)
                    if recurrent { engine.multiply(transA: false, m: B, a: dGhT, lda: GH, packedB: packed, beta: 1, c: dhCarry, ldc: H) }
                }
            }
            (ws.dh0.pointer + l * BH).update(from: dhCarry, count: BH)
            if config.cell == .lstm { (ws.dc0.pointer + l * BH).update(from: dcCarry, count: BH) }
            // Weights over all steps: dW_ih (GH, I_l) += dGx^T X_l; dW_hh (GH, H) += dGh^T H_prev.
            let input = l == 0 ? UnsafePointer(ws.xT.pointer) : UnsafePointer(ws.hs[l - 1].pointer + BH)
            // RNN/LSTM: W_hh sees the same gate gradients as W_ih; GRU: its own (dGh).
            let isGRU = config.cell == .gru
            let dGh = UnsafePointer(isGRU ? ws.dGh.pointer : dGx)
            // Without an initial state h[0] = 0 contributes nothing: skip step 0's rows.
            let skip = hasInitialState ? 0 : B
            let narrow = l == 0 && o.inputs < Self.narrowInput
            if !isGRU && !narrow {
                // RNN/LSTM: dW_ih and dW_hh are products of the same A = dGates^T; one call
                // packs it once for both (over steps skip..<T), then step 0's rows of dW_ih.
                engine.multiply(transA: true, m: GH, k: N - skip, a: dGh + skip * GH, lda: GH,
                                GemmRightOperand(n: o.inputs, b: input + skip * o.inputs, ldb: o.inputs,
                                                 c: g + o.weightIH, ldc: o.inputs),
                                GemmRightOperand(n: H, b: hs + skip * H, ldb: H, c: g + o.weightHH, ldc: H),
                                beta: 1)
                if skip > 0 { gemm(true, false, GH, o.inputs, skip, dGx, GH, input, o.inputs, 1, g + o.weightIH, o.inputs) }
            } else {
                if narrow {
                    // A narrow input (e.g. I = 5) makes (GH, I) a poor GEMM shape: compute
                    // dW_ih^T (I, GH) = X^T dGx instead and add it transposed.
                    let t = ws.weightGradientT.pointer
                    gemm(true, false, o.inputs, GH, N, input, o.inputs, dGx, GH, 0, t, GH)
                    let dW = g + o.weightIH
                    for j in 0..<GH {
                        for i in 0..<o.inputs { dW[j * o.inputs + i] += t[i * GH + j] }
                    }
                } else {
                    gemm(true, false, GH, o.inputs, N, dGx, GH, input, o.inputs, 1, g + o.weightIH, o.inputs)
                }
                gemm(true, false, GH, H, N - skip, dGh + skip * GH, GH, hs + skip * H, H, 1, g + o.weightHH, H)
            }
            // Biases: b_ih's gradient is the sum of dGx over all rows, and so is b_hh's
            // (RNN/LSTM); the GRU's b_hr and b_hz share b_ir's and b_iz's, b_hn has its own
            // sums after the 3H of dGx.
            for k in 0..<GH { g[o.biasIH + k] += dBias[k] }
            if isGRU {
                for k in 0..<(2 * H) { g[o.biasHH + k] += dBias[k] }
                for k in 0..<H { g[o.biasHH + 2 * H + k] += dBias[GH + k] }
            } else {
                for k in 0..<GH { g[o.biasHH + k] += dBias[k] }
            }
            if l > 0 {
                // Gradient of the layer below's outputs: dX (N, H) = dGx (N, GH) W_ih (GH, H).
                gemm(false, false, N, H, GH, dGx, GH, p + o.weightIH, H, 0, dBelow, H)
                swap(&dOut, &dBelow)
            }
        }
    }

    /// t[0 ..< width] += the first `width` lanes of s0, s1, s2, s3 (width <= 32).
    @inline(__always)
    private static func addLanes(
        _ s0: SIMD8<Float>, _ s1: SIMD8<Float>, _ s2: SIMD8<Float>, _ s3: SIMD8<Float>, width w: Int,
        to t: UnsafeMutablePointer<Float>
    ) {
        storeLanes(loadLanes(t, 0, min(8, w)) + s0, t, 0, min(8, w))
        if w > 8 { storeLanes(loadLanes(t, 8, min(8, w - 8)) + s1, t, 8, min(8, w - 8)) }
        if w > 16 { storeLanes(loadLanes(t, 16, min(8, w - 16)) + s2, t, 16, min(8, w - 16)) }
        if w > 24 { storeLanes(loadLanes(t, 24, w - 24) + s3, t, 24, w - 24) }
    }

    /// into (columns) += sum over rows of m (rows, columns) (the head's bias gradient).
    /// Columns in groups of 32 (four vector accumulators in registers) summed down all rows,
    /// then added once to the output; the sum is formed in row order for every column, as a
    /// per-row accumulation into the output would.
    private func addColumnSums(
        _ m: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>
    ) {
        var c = 0
        while c < columns {
            let w = min(32, columns - c)
            var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
            if w == 32 {
                var row = m + c
                for _ in 0..<rows {
                    s0 += loadLanes(row, 0, 8)
                    s1 += loadLanes(row, 8, 8)
                    s2 += loadLanes(row, 16, 8)
                    s3 += loadLanes(row, 24, 8)
                    row += columns
                }
            } else {
                for r in 0..<rows {
                    let row = m + r * columns + c
                    s0 += loadLanes(row, 0, min(8, w))
                    if w > 8 { s1 += loadLanes(row, 8, min(8, w - 8)) }
                    if w > 16 { s2 += loadLanes(row, 16, min(8, w - 16)) }
                    if w > 24 { s3 += loadLanes(row, 24, w - 24) }
                }
            }
            // A static helper rather than a local function capturing s0...s3: the capturing
            // version put its context on the heap, 14 allocations per seed-small step.
            Self.addLanes(s0, s1, s2, s3, width: w, to: out + c)
            c += w
        }
    }
}
