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
// Workspace: per layer and direction about (G + 3) * N * H floats of activations, plus G * N * H
// (2G for GRU) + 2 * D * N * H shared gradient scratch: ~265 MB for LSTM L=2, H=512, T=100, B=64
// (twice that bidirectional); dropout adds 2 * N * H per unit below the top layer.
//
// Options (PyTorch semantics):
//   D  directions (2 when bidirectional); a "unit" u = l*D + d is one direction of one layer,
//      d = 0 forward, d = 1 reverse. Layer l > 0 reads the D*H concatenated outputs of layer
//      l-1, as two products with the column halves of W_ih (no concatenated copy).
//   Variable lengths (pack_padded_sequence, enforce_sorted=False): the batch is reordered by
//      descending length (stable) into internal rows; step t then has B_t active rows, a prefix,
//      and every time-major matrix is PACKED: step t's rows start at rowStart[t] (sum of B_s,
//      s < t), Np = sum of lengths rows in all. Without lengths B_t = B and the layout is the
//      plain time-major one. Padding is never computed.
//   Token ids: x (B, T) holds ids as exact float values; with an embedding layer 0 reads the
//      gathered rows of embedding.weight (Np, E); without, the input projection is a gather of
//      W_ih's columns and its gradient a scatter-add (one-hot in meaning, never as a matrix).
//   Dropout: on layer l < L-1's outputs in training only, masks drawn per (seed, global step,
//      global sample, layer) (see DropoutKey), so a sample's mask does not depend on the split.

/// A recurrent state for every layer and direction: h (L*D, B, H) and, for LSTM, c (L*D, B, H).
public struct RecurrentState: Equatable, Sendable {
    /// h: (L*D, B, H), layer-major (then direction) like PyTorch's h_n.
    public var h: [Float]
    /// c: (L*D, B, H) for LSTM (PyTorch's c_n), nil for the other cells.
    public var c: [Float]?

    public init(h: [Float], c: [Float]? = nil) {
        self.h = h
        self.c = c
    }
}

/// Training targets of one batch, batch-first.
public enum Targets: Sendable, Equatable {
    /// Class ids for cross-entropy: (B) with a last-step head, (B, T) with a per-step head.
    case classIds([Int32])
    /// Float targets for MSE: (B, O) with a last-step head, (B, T, O) with a per-step head.
    case values([Float])
}

/// The result of a forward pass: head outputs and the final recurrent state.
public struct Prediction: Equatable, Sendable {
    /// Logits (cross-entropy) or predictions (MSE): (B, O) or (B, T, O), batch-first.
    public var outputs: [Float]
    /// h_n (and c_n) after the last step: (L*D, B, H); with lengths each sequence's state at
    /// its own last step (forward direction) and at step 0 (reverse), as PyTorch's packed h_n.
    public var finalState: RecurrentState
}

/// What keys the dropout masks of one training batch: the run's seed, the global step and the
/// global index of every batch row's sample (in the caller's row order). A sample's mask in
/// layer l is drawn from `SeededGenerator(dropoutSeed:step:sample:layer:)`, over its real steps
/// t = 0 ..< length and the D*H features of each step, forward features first; never from the
/// rank, so W workers draw the masks of one worker.
public struct DropoutKey: Sendable, Equatable {
    public var seed: UInt64
    public var step: Int
    public var samples: [Int]

    public init(seed: UInt64, step: Int, samples: [Int]) {
        self.seed = seed
        self.step = step
        self.samples = samples
    }
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
/// Per-unit buffers are indexed by u = l*D + d.
final class Workspace {
    let batch: Int
    let steps: Int
    /// Per unit: gates (Np, G*H); RNN pre-activations, LSTM i,f,g,o / GRU r,z,n activations;
    /// after backward, the gate gradients dGx.
    let gates: [AlignedBuffer]
    /// Per unit: h, room for (T+1, B, H). Forward direction: h0 (B rows) at 0, then the packed
    /// outputs (step t's at (B + rowStart[t]) * H). Reverse: the packed outputs at 0, h0 after
    /// them (at Np * H).
    let hs: [AlignedBuffer]
    /// Per unit (LSTM): c laid out as `hs`; tanh(c) packed (Np, H).
    let cs: [AlignedBuffer]
    let tanhC: [AlignedBuffer]
    /// Per unit (GRU): hn = h_prev W_hn^T + b_hn, packed (Np, H).
    let hn: [AlignedBuffer]
    /// Layer 0's input, packed time-major (Np, I) (features or gathered embedding rows).
    let xT: AlignedBuffer
    /// Token id of each packed row (token input).
    let tokenRows: UnsafeMutablePointer<Int32>
    /// One-hot token input: the packed rows in ascending id order (stable), and V + 1 counters
    /// of the counting sort that builds it (rows of nearby ids then share W_ih's cache lines).
    let tokenOrder: UnsafeMutablePointer<Int32>
    let tokenCounts: UnsafeMutablePointer<Int32>
    /// GRU recurrent product of one step (B, 3H).
    let hh: AlignedBuffer
    /// GRU: gate gradients seen by W_hh/b_hh (Np, G*H). (Those seen by W_ih/b_ih/input, dGx,
    /// overwrite a unit's `gates` in backward.)
    let dGh: AlignedBuffer
    /// Output gradients of a layer and of the layer below, per direction (Np, H), used in turn.
    let dA: [AlignedBuffer]
    let dB: [AlignedBuffer]
    /// Carries to the previous step in processing order: dh, dc (B, H).
    let dhCarry: AlignedBuffer
    let dcCarry: AlignedBuffer
    /// Head: logits (R, O) and their gradients (R, O).
    let logits: AlignedBuffer
    let dLogits: AlignedBuffer
    /// Last-step head with lengths: the forward direction's final states gathered (B, H);
    /// and the head's gradient for each direction's final state (B, H).
    let headInput: AlignedBuffer
    let dHead: [AlignedBuffer]
    /// Gate bias row (G*H) the cell kernels add to the gate products.
    let biasRow: AlignedBuffer
    /// A unit's bias gradient, summed by the backward cell kernels: G*H, and for the GRU
    /// another H for b_hn (whose gradient differs from b_in's).
    let dBias: AlignedBuffer
    /// dW_ih^T (I, G*H) of layer 0 when I is narrower than a GEMM register tile.
    let weightGradientT: AlignedBuffer
    /// B*H zeros, never written: the top layer's output gradient under a last-step head.
    let zeroRows: AlignedBuffer
    /// With lengths: each packed row's previous state gathered (Np, H), for dW_hh.
    let previous: AlignedBuffer
    /// Embedding: the gradient of layer 0's input rows (Np, E), scattered into embedding.weight.
    let dInput: AlignedBuffer
    /// Dropout (layers 0 ..< L-1, per unit): mask values 0 or 1/(1-P) and the dropped
    /// outputs the next layer reads, packed (Np, H).
    let masks: [AlignedBuffer]
    let dropped: [AlignedBuffer]
    /// Gradients of the initial state, (L*D, B, H) each, in internal row order.
    let dh0: AlignedBuffer
    let dc0: AlignedBuffer

    init(config: ModelConfig, batch: Int, steps: Int) {
        self.batch = batch
        self.steps = steps
        let H = config.hiddenSize, GH = config.cell.gateCount * H, L = config.layers, D = config.directions
        let U = L * D
        let N = batch * steps
        let isLSTM = config.cell == .lstm, isGRU = config.cell == .gru
        let oneHot = config.tokenInput && config.embeddingSize == nil
        gates = (0..<U).map { _ in AlignedBuffer(count: N * GH) }
        hs = (0..<U).map { _ in AlignedBuffer(count: (steps + 1) * batch * H) }
        cs = isLSTM ? (0..<U).map { _ in AlignedBuffer(count: (steps + 1) * batch * H) } : []
        tanhC = isLSTM ? (0..<U).map { _ in AlignedBuffer(count: N * H) } : []
        hn = isGRU ? (0..<U).map { _ in AlignedBuffer(count: N * H) } : []
        xT = AlignedBuffer(count: oneHot ? 0 : N * config.recurrentInputSize)
        tokenRows = .allocate(capacity: max(1, config.tokenInput ? N : 0))
        tokenOrder = .allocate(capacity: max(1, oneHot ? N : 0))
        tokenCounts = .allocate(capacity: oneHot ? config.inputSize + 1 : 1)
        hh = AlignedBuffer(count: isGRU ? batch * GH : 0)
        dGh = AlignedBuffer(count: isGRU ? N * GH : 0)
        dA = (0..<D).map { _ in AlignedBuffer(count: N * H) }
        dB = (0..<D).map { _ in AlignedBuffer(count: L > 1 ? N * H : 0) }
        dhCarry = AlignedBuffer(count: batch * H)
        dcCarry = AlignedBuffer(count: batch * H)
        let headRows = config.head == .lastStep ? batch : N
        logits = AlignedBuffer(count: headRows * config.outputSize)
        dLogits = AlignedBuffer(count: headRows * config.outputSize)
        headInput = AlignedBuffer(count: config.head == .lastStep ? batch * H : 0)
        dHead = (0..<D).map { _ in AlignedBuffer(count: config.head == .lastStep ? batch * H : 0) }
        biasRow = AlignedBuffer(count: GH)
        dBias = AlignedBuffer(count: isGRU ? GH + H : GH)
        let narrow = !config.tokenInput && config.inputSize < RNNNetwork.narrowInput
        weightGradientT = AlignedBuffer(count: narrow ? config.inputSize * GH : 0)
        zeroRows = AlignedBuffer(count: config.head == .lastStep ? batch * H : 0)
        previous = AlignedBuffer(count: N * H)
        dInput = AlignedBuffer(count: config.embeddingSize.map { N * $0 } ?? 0)
        let dropoutUnits = config.dropout > 0 ? (L - 1) * D : 0
        masks = (0..<dropoutUnits).map { _ in AlignedBuffer(count: N * H) }
        dropped = (0..<dropoutUnits).map { _ in AlignedBuffer(count: N * H) }
        dh0 = AlignedBuffer(count: U * batch * H)
        dc0 = AlignedBuffer(count: isLSTM ? U * batch * H : 0)
    }

    deinit {
        tokenRows.deallocate()
        tokenOrder.deallocate()
        tokenCounts.deallocate()
    }
}

/// Offsets of one unit's tensors in the flat buffer.
struct LayerOffsets {
    var weightIH: Int
    var weightHH: Int
    var biasIH: Int
    var biasHH: Int
    /// Columns of W_ih: I (or E) for layer 0, D*H above.
    var inputs: Int
}

/// The row layout of one batch: internal row order (descending length, stable) and the packed
/// per-step row counts. Refilled per call into the same arrays (no allocation once grown).
struct BatchLayout {
    var batch = 0
    var steps = 0
    /// Whether lengths were given (else every length is T and the order is the identity).
    var packed = false
    /// order[b]: the caller's row of internal row b.
    var order: [Int] = []
    /// length of internal row b (non-increasing in b).
    var lengths: [Int] = []
    /// B_t for t in 0 ... T (rowsAt[T] = 0).
    var rowsAt: [Int] = []
    /// First packed row of step t for t in 0 ... T (rowStart[T] = Np).
    var rowStart: [Int] = []
    /// Per-step head: the batch-first target row (caller order) of each packed row.
    var targetRow: [Int32] = []
    /// Scratch of the counting sort by length (T + 2 each), kept so that refilling allocates nothing.
    private var counts: [Int] = []
    private var start: [Int] = []

    var total: Int { rowStart[steps] }

    mutating func fill(batch B: Int, steps T: Int, lengths given: [Int]?, perStepTargets: Bool) {
        batch = B
        steps = T
        packed = given != nil
        order.removeAll(keepingCapacity: true)
        lengths.removeAll(keepingCapacity: true)
        rowsAt.removeAll(keepingCapacity: true)
        rowStart.removeAll(keepingCapacity: true)
        targetRow.removeAll(keepingCapacity: true)
        if let given {
            // Stable counting sort by descending length (ties keep the caller's order, as
            // torch.sort(descending=True, stable) would; the order only affects summation).
            counts.removeAll(keepingCapacity: true)
            counts.append(contentsOf: repeatElement(0, count: T + 2))
            for n in given { counts[n] += 1 }
            start.removeAll(keepingCapacity: true)
            start.append(contentsOf: repeatElement(0, count: T + 2))
            var acc = 0
            for n in stride(from: T, through: 1, by: -1) {
                start[n] = acc
                acc += counts[n]
            }
            order.append(contentsOf: repeatElement(0, count: B))
            lengths.append(contentsOf: repeatElement(0, count: B))
            for (b, n) in given.enumerated() {
                order[start[n]] = b
                lengths[start[n]] = n
                start[n] += 1
            }
        } else {
            order.append(contentsOf: 0..<B)
            lengths.append(contentsOf: repeatElement(T, count: B))
        }
        var active = B
        var row = 0
        for t in 0..<T {
            while active > 0 && lengths[active - 1] <= t { active -= 1 }
            rowsAt.append(active)
            rowStart.append(row)
            row += active
        }
        rowsAt.append(0)
        rowStart.append(row)
        if packed && perStepTargets {
            targetRow.append(contentsOf: repeatElement(0, count: row))
            for t in 0..<T {
                for b in 0..<rowsAt[t] { targetRow[rowStart[t] + b] = Int32(order[b] * T + t) }
            }
        } else if packed {
            targetRow.append(contentsOf: order.lazy.map { Int32($0) })
        }
    }
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
/// Inputs: x (B, T, I) of features, or (B, T) of token ids stored as float values when
/// `config.tokenInput`; `lengths` (B) in [1, T] for variable-length sequences (nil: all T);
/// `dropout` keys the inter-layer dropout masks of a training step (nil: no dropout).
///
/// Buffers: the workspace is allocated on the first call and whenever a larger (batch, steps)
/// arrives; the packed recurrent weights and the GEMM packing buffers likewise grow once. A
/// steady-state training step allocates nothing: AllocationTests counts the process's malloc
/// calls over steady-state steps (this call plus Adam) for every cell and option, 1 and 2
/// threads (valgrind on a `strip -g` copy of rnn-bench, `train --steps N`, shows the same:
/// the heap allocation count does not depend on N).
///
/// Threads: with `threads` > 1, large GEMMs are split by rows or columns and each unit's
/// recurrent steps by hidden units across one `ThreadTeam` (see `recurrentMembers`); every
/// element gets the same operations in the same order, so results are bitwise those of 1 thread.
public final class RNNNetwork {
    public let config: ModelConfig
    public let table: ParameterTable
    /// Threads a single large GEMM may be split across (1 = the calling thread only).
    public var threads: Int {
        get { engine.threads }
        set { engine.threads = max(1, newValue) }
    }

    private let engine: GemmEngine
    /// Per unit, W_hh packed once per pass for the T recurrent products: forward as
    /// op(B) = W_hh^T (H, G*H), backward as op(B) = W_hh (G*H, H).
    private let packedRecurrent: [PackedMatrix]
    private let packedRecurrentBackward: [PackedMatrix]
    /// With a split recurrent pass (`recurrentMembers`): per team member its engine, its
    /// columns of W_hh^T per unit and gate ([u * G + gate]) and of W_hh per unit (backward).
    private var memberEngines: [GemmEngine] = []
    private var memberPacked: [[PackedMatrix]] = []
    private var memberPackedBackward: [[PackedMatrix]] = []
    private let recurrentTask = RecurrentPassTask()
    /// A unit's recurrent steps are split across the threads only when one step's recurrent
    /// product (2 B H G*H flops) gives each thread at least this many flops (2 MFLOP is ~20 µs
    /// of one core, against a few µs per step for the barrier); tests lower it to split small models.
    var recurrentSplitMinFlops = 2_000_000
    private let layerOffsets: [LayerOffsets]
    private let headWeight: Int
    private let headBias: Int
    private let embedding: Int
    /// The activation and scratch buffers, created on first use and replaced only when a larger
    /// (batch, steps) shape arrives (internal so tests can check it is reused).
    private(set) var workspace: Workspace?
    /// Row layout of the last pass (what `finalState` and `initialStateGradient` describe).
    private var layout = BatchLayout()
    private var hasGradientOfInitialState = false
    /// Whether the last forward pass started from a caller-given state (else from zeros, and
    /// the products with h0 = 0 are skipped).
    private var hasInitialState = false
    /// Whether the last forward pass applied dropout masks.
    private var dropoutActive = false

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
        let D = config.directions
        layerOffsets = (0..<(config.layers * D)).map { u in
            let l = u / D, suffix = u % D == 1 ? "_reverse" : ""
            return LayerOffsets(weightIH: offset("rnn.weight_ih_l\(l)\(suffix)"), weightHH: offset("rnn.weight_hh_l\(l)\(suffix)"),
                                biasIH: offset("rnn.bias_ih_l\(l)\(suffix)"), biasHH: offset("rnn.bias_hh_l\(l)\(suffix)"),
                                inputs: l == 0 ? config.recurrentInputSize : D * config.hiddenSize)
        }
        headWeight = offset("fc.weight")
        headBias = offset("fc.bias")
        embedding = config.embeddingSize == nil ? -1 : offset("embedding.weight")
        packedRecurrent = (0..<(config.layers * D)).map { _ in PackedMatrix() }
        packedRecurrentBackward = (0..<(config.layers * D)).map { _ in PackedMatrix() }
        // Backward finishes the head, then layer L-1 (both directions) down to layer 0, then
        // the embedding; in the flat layout each is one range, just below the previous one.
        let layerStart = (0..<config.layers).map { offset("rnn.weight_ih_l\($0)") } + [offset("fc.weight")]
        gradientSegments = [layerStart[config.layers]..<table.totalCount]
            + stride(from: config.layers - 1, through: 0, by: -1).map { layerStart[$0]..<layerStart[$0 + 1] }
            + (config.embeddingSize == nil ? [] : [0..<layerStart[0]])
    }

    /// The ranges of the flat gradient in the order backward completes them (the head, layers
    /// from the top down, the embedding), covering `0..<table.totalCount`, each directly below
    /// the one before: what `onGradientReady` reports.
    public let gradientSegments: [Range<Int>]

    // MARK: Public entry points

    /// Forward, loss and backward on one batch (or shard). ADDS to `gradient` (laid out by
    /// `table`) the gradient of the loss SUM over the scored elements, and returns the sum,
    /// the count and the correct predictions. Two shards accumulated into one buffer give the
    /// gradient of the concatenated batch. Allocation-free once the workspace fits the shape.
    ///
    /// - Parameters:
    ///   - parameters: the flat parameters, `table.totalCount` values.
    ///   - input: x (B, T, I), batch-first (token ids (B, T) as floats with `tokenInput`).
    ///   - targets: class ids or float values (see `Targets`) matching `config.loss`/`head`.
    ///   - initialState: h0 (and c0 for LSTM), (L*D, B, H); nil means zeros.
    ///   - lengths: (B) sequence lengths in [1, T]; nil means every sequence has T steps.
    ///   - dropout: keys this step's dropout masks; nil trains without dropout.
    ///   - gradient: the flat gradient, `table.totalCount` values, accumulated into.
    public func accumulateGradients(
        parameters: [Float], input: [Float], batch: Int, steps: Int, targets: Targets,
        initialState: RecurrentState? = nil, lengths: [Int]? = nil, dropout: DropoutKey? = nil,
        gradient: inout [Float]
    ) throws(ModelInputError) -> LossStats {
        try validate(parameters: parameters.count, input: input, batch: batch, steps: steps,
                     targets: targets, initialState: initialState, lengths: lengths, dropout: dropout)
        guard gradient.count == table.totalCount else {
            throw ModelInputError("gradient buffer must hold \(table.totalCount) values, found \(gradient.count)")
        }
        return parameters.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                gradient.withUnsafeMutableBufferPointer { g in
                    run(parameters: p.baseAddress!, input: x.baseAddress!, batch: batch, steps: steps,
                        targets: targets, initialState: initialState, lengths: lengths, dropout: dropout,
                        scale: 1, gradient: g.baseAddress!)
                }
            }
        }
    }

    /// The same step on unsafe buffers (for callers that keep the flat buffers in their own
    /// storage, e.g. a bucketed all-reduce); the pointers are only used during the call.
    /// `onGradientReady` is called (on this thread) with each of `gradientSegments` in turn as
    /// soon as backward has finished adding into it: from then on this call neither reads nor
    /// writes that range, so another thread may send it while the layers below still compute.
    public func accumulateGradients(
        parameters: UnsafeBufferPointer<Float>, input: UnsafeBufferPointer<Float>, batch: Int, steps: Int,
        targets: Targets, initialState: RecurrentState? = nil, lengths: [Int]? = nil, dropout: DropoutKey? = nil,
        gradient: UnsafeMutableBufferPointer<Float>, onGradientReady: ((Range<Int>) -> Void)? = nil
    ) throws(ModelInputError) -> LossStats {
        try validate(parameters: parameters.count, input: input, batch: batch, steps: steps,
                     targets: targets, initialState: initialState, lengths: lengths, dropout: dropout)
        guard gradient.count == table.totalCount, let g = gradient.baseAddress else {
            throw ModelInputError("gradient buffer must hold \(table.totalCount) values, found \(gradient.count)")
        }
        return run(parameters: parameters.baseAddress!, input: input.baseAddress!, batch: batch, steps: steps,
                   targets: targets, initialState: initialState, lengths: lengths, dropout: dropout,
                   scale: 1, gradient: g, onGradientReady: onGradientReady)
    }

    /// PyTorch-style convenience: the mean loss (`stats.meanLoss`) and a fresh gradient of the
    /// MEAN loss, as `loss.backward()` on a mean-reduced loss produces. Allocates the gradient.
    /// The initial-state gradient of the mean is available afterwards from `initialStateGradient()`.
    public func meanLossAndGradient(
        parameters: [Float], input: [Float], batch: Int, steps: Int, targets: Targets,
        initialState: RecurrentState? = nil, lengths: [Int]? = nil, dropout: DropoutKey? = nil
    ) throws(ModelInputError) -> (stats: LossStats, gradient: [Float]) {
        try validate(parameters: parameters.count, input: input, batch: batch, steps: steps,
                     targets: targets, initialState: initialState, lengths: lengths, dropout: dropout)
        var gradient = [Float](repeating: 0, count: table.totalCount)
        let scale = 1 / Float(scoredCount(batch: batch, steps: steps, lengths: lengths))
        let stats = parameters.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                gradient.withUnsafeMutableBufferPointer { g in
                    run(parameters: p.baseAddress!, input: x.baseAddress!, batch: batch, steps: steps,
                        targets: targets, initialState: initialState, lengths: lengths, dropout: dropout,
                        scale: scale, gradient: g.baseAddress!)
                }
            }
        }
        return (stats, gradient)
    }

    /// Forward and loss only (validation): loss sum, scored count and correct predictions.
    public func evaluate(
        parameters: [Float], input: [Float], batch: Int, steps: Int, targets: Targets,
        initialState: RecurrentState? = nil, lengths: [Int]? = nil
    ) throws(ModelInputError) -> LossStats {
        try validate(parameters: parameters.count, input: input, batch: batch, steps: steps,
                     targets: targets, initialState: initialState, lengths: lengths, dropout: nil)
        return parameters.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                run(parameters: p.baseAddress!, input: x.baseAddress!, batch: batch, steps: steps,
                    targets: targets, initialState: initialState, lengths: lengths, dropout: nil,
                    scale: 1, gradient: nil)
            }
        }
    }

    /// Inference: the head outputs (B, O) or (B, T, O) and the final state, like
    /// `out, hidden = model(x, hidden)` in PyTorch. With lengths and a per-step head, the
    /// outputs past a sequence's length are the head applied to zero outputs (fc.bias), as
    /// `fc(pad_packed_sequence(out)[0])` gives.
    public func predict(
        parameters: [Float], input: [Float], batch: Int, steps: Int, initialState: RecurrentState? = nil,
        lengths: [Int]? = nil
    ) throws(ModelInputError) -> Prediction {
        try validate(parameters: parameters.count, input: input, batch: batch, steps: steps,
                     targets: nil, initialState: initialState, lengths: lengths, dropout: nil)
        prepare(batch: batch, steps: steps, initialState: initialState, lengths: lengths)
        parameters.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                forward(p.baseAddress!, x.baseAddress!, dropout: nil)
            }
        }
        let ws = workspace!
        let O = config.outputSize
        var outputs = [Float](repeating: 0, count: (config.head == .lastStep ? batch : batch * steps) * O)
        if config.head == .lastStep {
            for b in 0..<batch {
                for k in 0..<O { outputs[layout.order[b] * O + k] = ws.logits.pointer[b * O + k] }
            }
        } else {
            parameters.withUnsafeBufferPointer { p in
                for t in 0..<steps {
                    for b in 0..<batch {
                        let dst = (layout.order[b] * steps + t) * O
                        if b < layout.rowsAt[t] {
                            for k in 0..<O { outputs[dst + k] = ws.logits.pointer[(layout.rowStart[t] + b) * O + k] }
                        } else {
                            for k in 0..<O { outputs[dst + k] = p[headBias + k] }
                        }
                    }
                }
            }
        }
        return Prediction(outputs: outputs, finalState: finalState())
    }

    /// h_n (and c_n) of the last forward pass, (L*D, B, H), in the caller's row order.
    public func finalState() -> RecurrentState {
        guard let ws = workspace, layout.batch > 0 else { return RecurrentState(h: []) }
        let H = config.hiddenSize, B = layout.batch, D = config.directions
        let U = config.layers * D
        var h = [Float](repeating: 0, count: U * B * H)
        var c: [Float]? = config.cell == .lstm ? h : nil
        for u in 0..<U {
            for b in 0..<B {
                let src = finalRow(unit: u, row: b) * H
                let dst = (u * B + layout.order[b]) * H
                for k in 0..<H {
                    h[dst + k] = ws.hs[u].pointer[src + k]
                    if config.cell == .lstm { c?[dst + k] = ws.cs[u].pointer[src + k] }
                }
            }
        }
        return RecurrentState(h: h, c: c)
    }

    /// The gradient of the last backward pass with respect to the caller-given initial state h0
    /// (and c0), (L*D, B, H), scaled like the parameter gradient (sum or mean). Empty before any
    /// backward and when the last pass started from zeros (no initial state given).
    public func initialStateGradient() -> RecurrentState {
        guard let ws = workspace, hasGradientOfInitialState else { return RecurrentState(h: []) }
        let H = config.hiddenSize, B = layout.batch, U = config.layers * config.directions
        var h = [Float](repeating: 0, count: U * B * H)
        var c: [Float]? = config.cell == .lstm ? h : nil
        for u in 0..<U {
            for b in 0..<B {
                let src = (u * B + b) * H, dst = (u * B + layout.order[b]) * H
                for k in 0..<H {
                    h[dst + k] = ws.dh0.pointer[src + k]
                    if config.cell == .lstm { c?[dst + k] = ws.dc0.pointer[src + k] }
                }
            }
        }
        return RecurrentState(h: h, c: c)
    }

    /// Elements the loss averages over for a batch of this shape (with lengths, a per-step head
    /// scores only the real steps).
    public func scoredCount(batch: Int, steps: Int, lengths: [Int]? = nil) -> Int {
        let rows = config.head == .lastStep ? batch : (lengths.map { $0.reduce(0, +) } ?? batch * steps)
        return config.loss == .crossEntropy ? rows : rows * config.outputSize
    }

    /// Floating-point operations of one training step (forward 2*B*(I_l+H)*G*H*T per layer and
    /// direction, backward twice that), the count the benchmarks report GFLOP/s against. With
    /// lengths, B*T becomes the sum of the lengths; token input without an embedding counts
    /// no input product (it is a gather).
    public func trainingFlops(batch: Int, steps: Int, lengths: [Int]? = nil) -> Double {
        let GH = Double(config.cell.gateCount * config.hiddenSize)
        let rows = Double(lengths.map { $0.reduce(0, +) } ?? batch * steps)
        var forward = 0.0
        for l in 0..<config.layers {
            var inputs = Double(l == 0 ? config.recurrentInputSize : config.directions * config.hiddenSize)
            if l == 0 && config.tokenInput && config.embeddingSize == nil { inputs = 0 }
            forward += 2 * rows * (inputs + Double(config.hiddenSize)) * GH * Double(config.directions)
        }
        return 3 * forward
    }

    /// Inputs narrower than this take the transposed dW_ih product (see `backward`).
    static let narrowInput = 16
    /// Rows of W_ih per pass of the one-hot gather and scatter (8 measured ~5 % faster than 16
    /// in process CPU time on onehot-20k-h64: fewer strided streams per token).
    static let gatherBlock = 8

    // MARK: Validation

    private func validate(
        parameters: Int, input: UnsafeBufferPointer<Float>, batch B: Int, steps T: Int, targets: Targets?,
        initialState: RecurrentState?, lengths: [Int]?, dropout: DropoutKey?
    ) throws(ModelInputError) {
        let I = config.inputSize, H = config.hiddenSize, L = config.layers * config.directions, O = config.outputSize
        guard B >= 1 else { throw ModelInputError("batch size must be at least 1, found \(B)") }
        guard T >= 1 else { throw ModelInputError("sequence length must be at least 1, found \(T)") }
        guard parameters == table.totalCount else {
            throw ModelInputError("parameters must hold \(table.totalCount) values for this model, found \(parameters)")
        }
        if config.tokenInput {
            guard input.count == B * T else {
                throw ModelInputError("input x must be token ids (B=\(B), T=\(T)) = \(B * T) values, found \(input.count)")
            }
            for (i, v) in input.enumerated() where !(v >= 0 && v < Float(I) && v.rounded() == v) {
                throw ModelInputError("token id \(v) at index \(i) is not an integer in [0, \(I)) (the vocabulary)")
            }
        } else {
            guard input.count == B * T * I else {
                throw ModelInputError("input x must be (B=\(B), T=\(T), I=\(I)) = \(B * T * I) values, found \(input.count)")
            }
        }
        if let lengths {
            guard lengths.count == B else {
                throw ModelInputError("lengths must hold one value per sequence (B=\(B)), found \(lengths.count)")
            }
            for (i, n) in lengths.enumerated() where n < 1 || n > T {
                throw ModelInputError("length \(n) of sequence \(i) is outside [1, \(T)]")
            }
        }
        if let dropout, dropout.samples.count != B {
            throw ModelInputError("the dropout key must name one sample per row (B=\(B)), found \(dropout.samples.count)")
        }
        if let state = initialState {
            guard state.h.count == L * B * H else {
                throw ModelInputError("initial state h0 must be (L*D=\(L), B=\(B), H=\(H)) = \(L * B * H) values, found \(state.h.count)")
            }
            if config.cell == .lstm {
                guard let c = state.c else { throw ModelInputError("an LSTM initial state needs c0 as well as h0") }
                guard c.count == L * B * H else {
                    throw ModelInputError("initial state c0 must be (L*D=\(L), B=\(B), H=\(H)) = \(L * B * H) values, found \(c.count)")
                }
            } else if state.c != nil {
                throw ModelInputError("initial state has c0 but a \(config.cell.rawValue) cell has no cell state")
            }
        }
        guard let targets else { return }
        let rows = config.head == .lastStep ? B : B * T
        switch (config.loss, targets) {
        case (.crossEntropy, .classIds(let ids)):
            guard ids.count == rows else {
                // The shape string is formed only on failure: past 15 bytes it is a heap allocation.
                let shape = config.head == .lastStep ? "(B=\(B))" : "(B=\(B), T=\(T))"
                throw ModelInputError("class ids must be \(shape) = \(rows) values, found \(ids.count)")
            }
            if config.head == .everyStep, let lengths {
                // Targets past a sequence's length are padding and never read.
                for (b, n) in lengths.enumerated() {
                    for t in 0..<n where ids[b * T + t] < 0 || Int(ids[b * T + t]) >= O {
                        throw ModelInputError("class id \(ids[b * T + t]) at index \(b * T + t) is outside [0, \(O))")
                    }
                }
            } else {
                for (i, id) in ids.enumerated() where id < 0 || Int(id) >= O {
                    throw ModelInputError("class id \(id) at index \(i) is outside [0, \(O))")
                }
            }
        case (.mse, .values(let values)):
            guard values.count == rows * O else {
                // Formed only here: the per-step shape string is too long for a small string
                // and would be a heap allocation in every step.
                let valueShape = config.head == .lastStep ? "(B=\(B), O=\(O))" : "(B=\(B), T=\(T), O=\(O))"
                throw ModelInputError("float targets must be \(valueShape) = \(rows * O) values, found \(values.count)")
            }
        case (.crossEntropy, .values):
            throw ModelInputError("cross-entropy needs integer class ids, found float targets")
        case (.mse, .classIds):
            throw ModelInputError("MSE needs float targets, found integer class ids")
        }
    }

    private func validate(
        parameters: Int, input: [Float], batch B: Int, steps T: Int, targets: Targets?,
        initialState: RecurrentState?, lengths: [Int]?, dropout: DropoutKey?
    ) throws(ModelInputError) {
        let result: Result<Void, ModelInputError> = input.withUnsafeBufferPointer { x in
            do throws(ModelInputError) {
                try validate(parameters: parameters, input: x, batch: B, steps: T, targets: targets,
                             initialState: initialState, lengths: lengths, dropout: dropout)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    // MARK: Layout helpers

    /// The buffer row (in units of H) of step t's output row b of unit u.
    @inline(__always)
    private func outputRow(unit u: Int, step t: Int, row b: Int) -> Int {
        (u % config.directions == 0 ? layout.batch : 0) + layout.rowStart[t] + b
    }

    /// The buffer row of unit u's initial state row b.
    @inline(__always)
    private func initialRow(unit u: Int, row b: Int) -> Int {
        u % config.directions == 0 ? b : layout.total + b
    }

    /// The buffer row of unit u's final state for internal row b: the forward direction's
    /// output at the sequence's last step, the reverse direction's at step 0.
    @inline(__always)
    private func finalRow(unit u: Int, row b: Int) -> Int {
        u % config.directions == 0 ? outputRow(unit: u, step: layout.lengths[b] - 1, row: b) : outputRow(unit: u, step: 0, row: b)
    }

    /// Where step t of unit u reads its previous state: rows [0, fromSlot) are the outputs of
    /// the step before in processing order (at buffer row `slot`), rows [fromSlot, B_t) the
    /// initial state's.
    @inline(__always)
    private func previous(unit u: Int, step t: Int) -> (slot: Int, fromSlot: Int) {
        let T = layout.steps
        if u % config.directions == 0 {
            return t == 0 ? (0, 0) : (outputRow(unit: u, step: t - 1, row: 0), layout.rowsAt[t])
        }
        return t == T - 1 ? (0, 0) : (outputRow(unit: u, step: t + 1, row: 0), layout.rowsAt[t + 1])
    }

    /// Packed (Np, H) output rows of unit u as the layer above (or the head) reads them.
    @inline(__always)
    private func layerOutput(_ ws: Workspace, unit u: Int) -> UnsafePointer<Float> {
        let l = u / config.directions
        if dropoutActive && l < config.layers - 1 { return UnsafePointer(ws.dropped[u].pointer) }
        return UnsafePointer(ws.hs[u].pointer + outputRow(unit: u, step: 0, row: 0) * config.hiddenSize)
    }

    // MARK: Step

    /// Sizes the workspace for (batch, steps) (reused when it fits), lays out the rows and
    /// loads h0/c0.
    private func prepare(batch B: Int, steps T: Int, initialState: RecurrentState?, lengths: [Int]?) {
        if let ws = workspace, ws.batch >= B, ws.steps >= T {
            // Fits: reuse.
        } else {
            let b = max(B, workspace?.batch ?? 0), t = max(T, workspace?.steps ?? 0)
            workspace = Workspace(config: config, batch: b, steps: t)
        }
        layout.fill(batch: B, steps: T, lengths: lengths, perStepTargets: config.head == .everyStep)
        let ws = workspace!
        let H = config.hiddenSize
        for u in 0..<(config.layers * config.directions) {
            let h = ws.hs[u].pointer + initialRow(unit: u, row: 0) * H
            let c = config.cell == .lstm ? ws.cs[u].pointer + initialRow(unit: u, row: 0) * H : nil
            if let state = initialState {
                for b in 0..<B {
                    let src = (u * B + layout.order[b]) * H
                    state.h.withUnsafeBufferPointer { s in (h + b * H).update(from: s.baseAddress! + src, count: H) }
                    if let cs = state.c, let c {
                        cs.withUnsafeBufferPointer { s in (c + b * H).update(from: s.baseAddress! + src, count: H) }
                    }
                }
            } else {
                h.update(repeating: 0, count: B * H)
                c?.update(repeating: 0, count: B * H)
            }
        }
        hasInitialState = initialState != nil
        hasGradientOfInitialState = false
    }

    private func run(
        parameters p: UnsafePointer<Float>, input x: UnsafePointer<Float>, batch B: Int, steps T: Int,
        targets: Targets, initialState: RecurrentState?, lengths: [Int]?, dropout: DropoutKey?,
        scale: Float, gradient: UnsafeMutablePointer<Float>?, onGradientReady: ((Range<Int>) -> Void)? = nil
    ) -> LossStats {
        prepare(batch: B, steps: T, initialState: initialState, lengths: lengths)
        forward(p, x, dropout: gradient == nil ? nil : dropout)
        let ws = workspace!
        let lastStep = config.head == .lastStep
        let rows = lastStep ? B : layout.total
        let O = config.outputSize
        let dLogits = gradient == nil ? nil : ws.dLogits.pointer
        let stats: LossStats = layout.targetRow.withUnsafeBufferPointer { map in
            let targetIndex = TargetRows(perStep: !lastStep, batch: B, steps: T, map: layout.packed ? map.baseAddress : nil)
            switch targets {
            case .classIds(let ids):
                return ids.withUnsafeBufferPointer { ids in
                    LossKernels.crossEntropy(logits: ws.logits.pointer, rows: rows, classes: O, ids: ids.baseAddress!,
                                             targetIndex: targetIndex, scale: scale, dLogits: dLogits)
                }
            case .values(let values):
                return values.withUnsafeBufferPointer { v in
                    LossKernels.meanSquaredError(predictions: ws.logits.pointer, rows: rows, outputs: O,
                                                 targets: v.baseAddress!, targetIndex: targetIndex, scale: scale,
                                                 dLogits: dLogits)
                }
            }
        }
        if let gradient {
            backward(p, gradient, ready: onGradientReady)
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

    /// Layer 0's input in packed time-major order: features copied, embedding rows gathered,
    /// or (one-hot) only the token id of every row.
    private func packInput(_ p: UnsafePointer<Float>, _ x: UnsafePointer<Float>) {
        let ws = workspace!
        let B = layout.batch, T = layout.steps
        if !config.tokenInput {
            let I = config.inputSize
            if !layout.packed {
                // x (B, T, I) -> xT (T, B, I).
                for b in 0..<B {
                    for t in 0..<T {
                        (ws.xT.pointer + (t * B + b) * I).update(from: x + (b * T + t) * I, count: I)
                    }
                }
                return
            }
            for t in 0..<T {
                for b in 0..<layout.rowsAt[t] {
                    (ws.xT.pointer + (layout.rowStart[t] + b) * I).update(from: x + (layout.order[b] * T + t) * I, count: I)
                }
            }
            return
        }
        for t in 0..<T {
            for b in 0..<layout.rowsAt[t] {
                ws.tokenRows[layout.rowStart[t] + b] = Int32(x[layout.order[b] * T + t])
            }
        }
        if let E = config.embeddingSize {
            for r in 0..<layout.total {
                (ws.xT.pointer + r * E).update(from: p + embedding + Int(ws.tokenRows[r]) * E, count: E)
            }
            return
        }
        // One-hot: a stable counting sort of the rows by id, for the gather and the scatter.
        let V = config.inputSize, counts = ws.tokenCounts
        counts.update(repeating: 0, count: V + 1)
        for r in 0..<layout.total { counts[Int(ws.tokenRows[r]) + 1] += 1 }
        for v in 0..<V { counts[v + 1] += counts[v] }
        for r in 0..<layout.total {
            let id = Int(ws.tokenRows[r])
            ws.tokenOrder[Int(counts[id])] = Int32(r)
            counts[id] += 1
        }
    }

    /// Draws layer l's dropout masks (see `DropoutKey`) and writes the dropped outputs.
    private func applyDropout(layer l: Int, key: DropoutKey) {
        let ws = workspace!
        let H = config.hiddenSize, D = config.directions
        let keep = 1 - config.dropout
        let scale = 1 / keep
        // A draw u in [0, 1) keeps the element when u < 1 - P.
        let threshold = UInt64((Double(keep) * 16_777_216).rounded())
        for b in 0..<layout.batch {
            var generator = SeededGenerator(dropoutSeed: key.seed, step: key.step, sample: key.samples[layout.order[b]], layer: l)
            for t in 0..<layout.lengths[b] {
                let row = layout.rowStart[t] + b
                for d in 0..<D {
                    let mask = ws.masks[l * D + d].pointer + row * H
                    for k in 0..<H { mask[k] = generator.next() >> 40 < threshold ? scale : 0 }
                }
            }
        }
        for d in 0..<D {
            let u = l * D + d
            let out = ws.hs[u].pointer + outputRow(unit: u, step: 0, row: 0) * H
            let mask = ws.masks[u].pointer, dst = ws.dropped[u].pointer
            for i in 0..<(layout.total * H) { dst[i] = out[i] * mask[i] }
        }
    }

    /// Forward through every layer and the head; leaves activations in the workspace and the
    /// head outputs in `logits` (R, O), packed time-major rows for a per-step head.
    private func forward(_ p: UnsafePointer<Float>, _ x: UnsafePointer<Float>, dropout: DropoutKey?) {
        let ws = workspace!
        let H = config.hiddenSize, O = config.outputSize, D = config.directions, B = layout.batch
        let GH = config.cell.gateCount * H
        let Np = layout.total
        dropoutActive = dropout != nil && config.dropout > 0 && config.layers > 1
        packInput(p, x)
        for u in 0..<(config.layers * D) {
            let l = u / D, d = u % D
            let o = layerOffsets[u]
            let gates = ws.gates[u].pointer
            // Bias row: b_ih + b_hh, except the GRU's b_hn, which sits inside r * (W_hn h + b_hn).
            // The cell kernels add it to the gates as they read them.
            let bias = ws.biasRow.pointer
            let keepHH = config.cell == .gru ? 2 * H : GH
            for k in 0..<GH { bias[k] = p[o.biasIH + k] + (k < keepHH ? p[o.biasHH + k] : 0) }
            // Input projection of all steps: gates (Np, GH) = X_l (Np, I_l) W_ih^T.
            if l == 0 && config.tokenInput && config.embeddingSize == nil {
                Self.gatherColumns(p + o.weightIH, columns: o.inputs, rows: GH, ids: ws.tokenRows, order: ws.tokenOrder,
                                   count: Np, into: gates)
            } else if l == 0 {
                gemm(false, true, Np, GH, o.inputs, ws.xT.pointer, o.inputs, p + o.weightIH, o.inputs, 0, gates, GH)
            } else {
                for e in 0..<D {
                    gemm(false, true, Np, GH, H, layerOutput(ws, unit: (l - 1) * D + e), H, p + o.weightIH + e * H, o.inputs,
                         e == 0 ? 0 : 1, gates, GH)
                }
            }
            recurrentPass(p, unit: u, backward: false)
            if dropoutActive && d == D - 1 && l < config.layers - 1, let dropout { applyDropout(layer: l, key: dropout) }
        }
        // Head: logits (R, O) = out (R, D*H) fc.weight^T + fc.bias, one product per direction.
        let lastStep = config.head == .lastStep
        let rows = lastStep ? B : Np
        if lastStep && layout.packed {
            // Forward direction's final states, each sequence's own last step, into one block.
            let u = (config.layers - 1) * D
            for b in 0..<B {
                (ws.headInput.pointer + b * H).update(from: ws.hs[u].pointer + finalRow(unit: u, row: b) * H, count: H)
            }
        }
        for r in 0..<rows { (ws.logits.pointer + r * O).update(from: p + headBias, count: O) }
        for d in 0..<D {
            gemm(false, true, rows, O, H, headInput(ws, direction: d), H, p + headWeight + d * H, D * H, 1, ws.logits.pointer, O)
        }
    }

    /// The rows the head reads for direction d: the top layer's final states (B, H) for a
    /// last-step head (gathered when lengths differ), its packed outputs (Np, H) otherwise.
    private func headInput(_ ws: Workspace, direction d: Int) -> UnsafePointer<Float> {
        let H = config.hiddenSize
        let u = (config.layers - 1) * config.directions + d
        guard config.head == .lastStep else { return layerOutput(ws, unit: u) }
        if d == 1 || !layout.packed { return UnsafePointer(ws.hs[u].pointer + finalRow(unit: u, row: 0) * H) }
        // Forward direction with lengths: the block `forward` gathered.
        return UnsafePointer(ws.headInput.pointer)
    }

    /// Backward from `dLogits` (R, O) through the head and every layer; accumulates into `g`
    /// and leaves dh0/dc0 in the workspace.
    /// `ready` gets each of `gradientSegments` once it is final.
    private func backward(_ p: UnsafePointer<Float>, _ g: UnsafeMutablePointer<Float>, ready: ((Range<Int>) -> Void)? = nil) {
        let ws = workspace!
        let H = config.hiddenSize, O = config.outputSize, L = config.layers, D = config.directions
        let B = layout.batch
        let GH = config.cell.gateCount * H
        let Np = layout.total
        let BH = B * H
        let lastStep = config.head == .lastStep
        let rows = lastStep ? B : Np
        let dLogits = UnsafePointer(ws.dLogits.pointer)
        // Head: d fc.weight (O, D*H) += dLogits^T (O, R) out (R, D*H); d fc.bias += column sums.
        for d in 0..<D {
            gemm(true, false, O, H, rows, dLogits, O, headInput(ws, direction: d), H, 1, g + headWeight + d * H, D * H)
        }
        addColumnSums(dLogits, rows: rows, columns: O, into: g + headBias)
        ready?(gradientSegments[0])
        // dOut (Np, H) per direction: gradient of the top layer's outputs; under a last-step
        // head only the final states get one, dHead (B, H), injected into the carries below.
        var dOut = ws.dA
        var dBelow = ws.dB
        for d in 0..<D {
            if lastStep {
                gemm(false, false, B, H, O, dLogits, O, p + headWeight + d * H, D * H, 0, ws.dHead[d].pointer, H)
            } else {
                gemm(false, false, Np, H, O, dLogits, O, p + headWeight + d * H, D * H, 0, dOut[d].pointer, H)
            }
        }
        let dhCarry = ws.dhCarry.pointer
        let dcCarry = ws.dcCarry.pointer
        for l in stride(from: L - 1, through: 0, by: -1) {
            for d in 0..<D {
                let u = l * D + d
                dhCarry.update(repeating: 0, count: BH)
                dcCarry.update(repeating: 0, count: BH)
                ws.dBias.pointer.update(repeating: 0, count: ws.dBias.count)
                // Reverse direction: its final state is step 0's output, the first step of backward.
                if lastStep && l == L - 1 && d == 1 { dhCarry.update(from: ws.dHead[1].pointer, count: BH) }
                recurrentPass(p, unit: u, backward: true, dOut: UnsafePointer(dOut[d].pointer))
                weightGradients(p, g, unit: u)
            }
            ready?(gradientSegments[L - l])
            if l > 0 {
                // Gradient of the layer below's outputs, per direction e:
                // dX_e (Np, H) = sum over d of dGx_d (Np, GH) W_ih_d[:, e*H ..< (e+1)*H].
                for e in 0..<D {
                    for d in 0..<D {
                        let u = l * D + d
                        gemm(false, false, Np, H, GH, ws.gates[u].pointer, GH, p + layerOffsets[u].weightIH + e * H, D * H,
                             d == 0 ? 0 : 1, dBelow[e].pointer, H)
                    }
                    if dropoutActive {
                        let mask = ws.masks[(l - 1) * D + e].pointer, dx = dBelow[e].pointer
                        for i in 0..<(Np * H) { dx[i] *= mask[i] }
                    }
                }
                swap(&dOut, &dBelow)
            } else if let E = config.embeddingSize {
                // Embedding: dX (Np, E) = sum over d of dGx_d W_ih_d, scattered into the rows of
                // the ids seen (padding_idx's row gets none).
                let dx = ws.dInput.pointer
                for d in 0..<D {
                    gemm(false, false, Np, E, GH, ws.gates[d].pointer, GH, p + layerOffsets[d].weightIH, E, d == 0 ? 0 : 1, dx, E)
                }
                for r in 0..<Np {
                    let id = Int(ws.tokenRows[r])
                    if id == config.paddingIndex { continue }
                    let row = g + embedding + id * E, src = dx + r * E
                    for k in 0..<E { row[k] += src[k] }
                }
                ready?(gradientSegments[L + 1])
            }
        }
    }

    // MARK: Recurrent steps (one unit, optionally split across the thread team)

    /// Members of the engine's thread team the recurrent steps of unit passes run on: 1, or
    /// `threads` when one step's recurrent product gives every member at least
    /// `recurrentSplitMinFlops` (each member then owns a range of hidden units: its columns
    /// of every gate block, of h and c and of the backward product).
    private func recurrentMembers() -> Int {
        let n = engine.threads
        let H = config.hiddenSize, GH = config.cell.gateCount * H
        guard n > 1, H >= 8 * n, 2 * layout.batch * H * GH / n >= recurrentSplitMinFlops else { return 1 }
        while memberEngines.count < n {
            memberEngines.append(GemmEngine(threads: 1))
            memberPacked.append((0..<(packedRecurrent.count * config.cell.gateCount)).map { _ in PackedMatrix() })
            memberPackedBackward.append(packedRecurrent.map { _ in PackedMatrix() })
        }
        return n
    }

    /// Hidden units of member i of n: boundaries rounded to multiples of 8 (whole SIMD chunks).
    @inline(__always)
    private func memberUnits(_ i: Int, of n: Int) -> Range<Int> {
        let H = config.hiddenSize
        @inline(__always) func bound(_ k: Int) -> Int { k == n ? H : min(H, (H * k / n + 4) / 8 * 8) }
        return bound(i)..<bound(i + 1)
    }

    /// Runs unit u's T recurrent steps, forward or backward, on one thread or split by hidden
    /// units across the team (bitwise the same: every element gets the same operations).
    /// dOut: backward only, the (Np, H) gradient of the unit's outputs from above.
    private func recurrentPass(_ p: UnsafePointer<Float>, unit u: Int, backward: Bool, dOut: UnsafePointer<Float>? = nil) {
        let members = recurrentMembers()
        if members == 1 {
            if backward { backwardSteps(p, unit: u, dOut: dOut!, member: 0, of: 1) } else { forwardSteps(p, unit: u, member: 0, of: 1) }
            return
        }
        let pass = recurrentTask
        pass.dOut = dOut
        pass.network = self
        pass.parameters = p
        pass.unit = u
        pass.backward = backward
        pass.members = members
        engine.team.run(pass)
        pass.network = nil
    }

    /// The forward steps of unit u for member `member` of `members` (its hidden units only).
    fileprivate func forwardSteps(_ p: UnsafePointer<Float>, unit u: Int, member: Int, of members: Int) {
        let ws = workspace!
        let H = config.hiddenSize, D = config.directions, T = layout.steps
        let G = config.cell.gateCount, GH = G * H
        let d = u % D
        let o = layerOffsets[u]
        let units = memberUnits(member, of: members)
        let lo = units.lowerBound, width = units.count
        let gates = ws.gates[u].pointer
        let hs = ws.hs[u].pointer
        let bias = UnsafePointer(ws.biasRow.pointer)
        let team = members > 1 ? engine.team : nil
        let engine = members > 1 ? memberEngines[member] : self.engine
        // W_hh^T packed: whole (H, GH) on one thread; else this member's columns of each gate block.
        if members == 1 {
            packedRecurrent[u].pack(transB: true, k: H, n: GH, b: p + o.weightHH, ldb: H)
        } else {
            for gate in 0..<G {
                memberPacked[member][u * G + gate].pack(transB: true, k: H, n: width, b: p + o.weightHH + (gate * H + lo) * H, ldb: H)
            }
        }
        /// c (m, this member's columns of GH) = beta * c + a (m, H) W_hh^T.
        @inline(__always) func product(_ m: Int, _ a: UnsafePointer<Float>, beta: Float, _ c: UnsafeMutablePointer<Float>) {
            if members == 1 {
                engine.multiply(transA: false, m: m, a: a, lda: H, packedB: packedRecurrent[u], beta: beta, c: c, ldc: GH)
                return
            }
            for gate in 0..<G {
                engine.multiply(transA: false, m: m, a: a, lda: H, packedB: memberPacked[member][u * G + gate], beta: beta,
                                c: c + gate * H + lo, ldc: GH)
            }
        }
        let h0 = hs + initialRow(unit: u, row: 0) * H
        let c0 = config.cell == .lstm ? ws.cs[u].pointer + initialRow(unit: u, row: 0) * H : h0
        for s in 0..<T {
            let t = d == 0 ? s : T - 1 - s
            let rows = layout.rowsAt[t]
            let (slot, fromSlot) = previous(unit: u, step: t)
            let hSlot = UnsafePointer(hs + slot * H)
            let hInit = UnsafePointer(h0 + fromSlot * H)
            let rest = rows - fromSlot
            let out = outputRow(unit: u, step: t, row: 0)
            let hOut = hs + out * H
            let g = gates + layout.rowStart[t] * GH
            let gRest = g + fromSlot * GH
            switch config.cell {
            case .rnnTanh, .rnnRelu, .lstm:
                if fromSlot > 0 { product(fromSlot, hSlot, beta: 1, g) }
                if rest > 0 && hasInitialState { product(rest, hInit, beta: 1, gRest) }
                if config.cell == .lstm {
                    let cs = ws.cs[u].pointer
                    let tanhC = ws.tanhC[u].pointer + layout.rowStart[t] * H
                    if fromSlot > 0 {
                        CellKernels.lstmForward(gates: g, bias: bias, cPrev: cs + slot * H, c: cs + out * H,
                                                tanhC: tanhC, h: hOut, batch: fromSlot, hidden: H, units: units)
                    }
                    if rest > 0 {
                        CellKernels.lstmForward(gates: gRest, bias: bias, cPrev: c0 + fromSlot * H, c: cs + (out + fromSlot) * H,
                                                tanhC: tanhC + fromSlot * H, h: hOut + fromSlot * H, batch: rest, hidden: H,
                                                units: units)
                    }
                } else {
                    CellKernels.rnnForward(relu: config.cell == .rnnRelu, pre: g, bias: bias, h: hOut, batch: rows, hidden: H,
                                           units: units)
                }
            case .gru:
                let hh = ws.hh.pointer
                if fromSlot > 0 { product(fromSlot, hSlot, beta: 0, hh) }
                if rest > 0 {
                    if hasInitialState {
                        product(rest, hInit, beta: 0, hh + fromSlot * GH)
                    } else {
                        for r in fromSlot..<rows {
                            for gate in 0..<G { (hh + r * GH + gate * H + lo).update(repeating: 0, count: width) }
                        }
                    }
                }
                let hn = ws.hn[u].pointer + layout.rowStart[t] * H
                if fromSlot > 0 {
                    CellKernels.gruForward(gates: g, bias: bias, hh: hh, biasHN: p + o.biasHH + 2 * H, hPrev: hSlot,
                                           hn: hn, h: hOut, batch: fromSlot, hidden: H, units: units)
                }
                if rest > 0 {
                    CellKernels.gruForward(gates: gRest, bias: bias, hh: hh + fromSlot * GH, biasHN: p + o.biasHH + 2 * H,
                                           hPrev: hInit, hn: hn + fromSlot * H, h: hOut + fromSlot * H, batch: rest, hidden: H,
                                           units: units)
                }
            }
            // The next step's product reads every member's columns of this step's h.
            team?.barrier(member: member)
        }
    }

    /// The backward steps of unit u for member `member` of `members`: its hidden units of the
    /// gate gradients, the carries, the bias sums and the initial-state gradients. The caller
    /// has zeroed the carries and the bias sums (and injected the reverse direction's head
    /// gradient).
    fileprivate func backwardSteps(_ p: UnsafePointer<Float>, unit u: Int, dOut: UnsafePointer<Float>, member: Int, of members: Int) {
        let ws = workspace!
        let H = config.hiddenSize, D = config.directions, L = config.layers
        let T = layout.steps, B = layout.batch
        let GH = config.cell.gateCount * H
        let l = u / D, d = u % D
        let o = layerOffsets[u]
        let units = memberUnits(member, of: members)
        let lo = units.lowerBound, width = units.count
        let hs = UnsafePointer(ws.hs[u].pointer)
        let gates = UnsafePointer(ws.gates[u].pointer)
        // The gate gradients dGx (Np, GH) overwrite the gate activations step by step: the
        // backward kernels read each chunk of step t's gates before writing its gradient,
        // and nothing reads the activations afterwards.
        let dGx = ws.gates[u].pointer
        let dhCarry = ws.dhCarry.pointer
        let dcCarry = ws.dcCarry.pointer
        let dBias = ws.dBias.pointer
        let team = members > 1 ? engine.team : nil
        let engine = members > 1 ? memberEngines[member] : self.engine
        // W_hh (GH, H) packed as op(B): whole on one thread, else this member's H columns.
        let packed = members > 1 ? memberPackedBackward[member][u] : packedRecurrentBackward[u]
        packed.pack(transB: false, k: GH, n: width, b: p + o.weightHH + lo, ldb: H)
        /// rows [from, to) of dst (ldd H) = the same rows of src, this member's columns.
        @inline(__always) func copyRows(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ from: Int, _ to: Int) {
            if members == 1 {
                (dst + from * H).update(from: src + from * H, count: (to - from) * H)
                return
            }
            for r in from..<to { (dst + r * H + lo).update(from: src + r * H + lo, count: width) }
        }
        let injected = config.head == .lastStep && l == L - 1
        let h0 = hs + initialRow(unit: u, row: 0) * H
        let c0 = config.cell == .lstm ? UnsafePointer(ws.cs[u].pointer + initialRow(unit: u, row: 0) * H) : h0
        for s in 0..<T {
            let t = d == 0 ? T - 1 - s : s
            let rowsT = layout.rowsAt[t]
            if injected && d == 0 {
                // Forward direction: rows whose sequence ends at step t start with the
                // head's gradient (their carry is still zero).
                let from = layout.rowsAt[t + 1]
                if rowsT > from { copyRows(dhCarry, ws.dHead[0].pointer, from, rowsT) }
            }
            let dOutT = injected ? UnsafePointer(ws.zeroRows.pointer) : dOut + layout.rowStart[t] * H
            let dG = dGx + layout.rowStart[t] * GH
            let gT = gates + layout.rowStart[t] * GH
            let (slot, fromSlot) = previous(unit: u, step: t)
            // Rows whose gradient towards the previous state is needed (towards h0 only
            // for a caller-given initial state).
            let needed = hasInitialState ? rowsT : fromSlot
            let rest = rowsT - fromSlot
            let out = outputRow(unit: u, step: t, row: 0)
            // The product below reads every member's columns of this step's gate gradients.
            switch config.cell {
            case .rnnTanh, .rnnRelu:
                CellKernels.rnnBackward(relu: config.cell == .rnnRelu, h: hs + out * H, dOut: dOutT,
                                        carry: dhCarry, dPre: dG, dBias: dBias, batch: rowsT, hidden: H, units: units)
                team?.barrier(member: member)
                if needed > 0 { engine.multiply(transA: false, m: needed, a: dG, lda: GH, packedB: packed, beta: 0, c: dhCarry + lo, ldc: H) }
            case .lstm:
                let cs = UnsafePointer(ws.cs[u].pointer)
                let tanhC = UnsafePointer(ws.tanhC[u].pointer + layout.rowStart[t] * H)
                if fromSlot > 0 {
                    CellKernels.lstmBackward(gates: gT, cPrev: cs + slot * H, tanhC: tanhC, dOut: dOutT,
                                             dhCarry: dhCarry, dcCarry: dcCarry, dGates: dG, dBias: dBias,
                                             batch: fromSlot, hidden: H, units: units)
                }
                if rest > 0 {
                    CellKernels.lstmBackward(gates: gT + fromSlot * GH, cPrev: c0 + fromSlot * H, tanhC: tanhC + fromSlot * H,
                                             dOut: dOutT + fromSlot * H, dhCarry: dhCarry + fromSlot * H,
                                             dcCarry: dcCarry + fromSlot * H, dGates: dG + fromSlot * GH, dBias: dBias,
                                             batch: rest, hidden: H, units: units)
                }
                team?.barrier(member: member)
                if needed > 0 { engine.multiply(transA: false, m: needed, a: dG, lda: GH, packedB: packed, beta: 0, c: dhCarry + lo, ldc: H) }
            case .gru:
                let dGhT = ws.dGh.pointer + layout.rowStart[t] * GH
                let hn = UnsafePointer(ws.hn[u].pointer + layout.rowStart[t] * H)
                if fromSlot > 0 {
                    CellKernels.gruBackward(gates: gT, hn: hn, hPrev: hs + slot * H, dOut: dOutT, dhCarry: dhCarry,
                                            dGx: dG, dGh: dGhT, dBias: dBias, batch: fromSlot, hidden: H, units: units)
                }
                if rest > 0 {
                    CellKernels.gruBackward(gates: gT + fromSlot * GH, hn: hn + fromSlot * H, hPrev: h0 + fromSlot * H,
                                            dOut: dOutT + fromSlot * H, dhCarry: dhCarry + fromSlot * H,
                                            dGx: dG + fromSlot * GH, dGh: dGhT + fromSlot * GH, dBias: dBias,
                                            batch: rest, hidden: H, units: units)
                }
                team?.barrier(member: member)
                if needed > 0 { engine.multiply(transA: false, m: needed, a: dGhT, lda: GH, packedB: packed, beta: 1, c: dhCarry + lo, ldc: H) }
            }
            if hasInitialState && rest > 0 {
                // Rows that started from the initial state at this step.
                copyRows(ws.dh0.pointer + u * B * H, dhCarry, fromSlot, rowsT)
                if config.cell == .lstm { copyRows(ws.dc0.pointer + u * B * H, dcCarry, fromSlot, rowsT) }
            }
        }
    }

    /// dW_ih, dW_hh and the biases of unit u from its gate gradients (in `gates`).
    private func weightGradients(_ p: UnsafePointer<Float>, _ g: UnsafeMutablePointer<Float>, unit u: Int) {
        let ws = workspace!
        let H = config.hiddenSize, D = config.directions, B = layout.batch
        let GH = config.cell.gateCount * H
        let Np = layout.total
        let l = u / D, d = u % D
        let o = layerOffsets[u]
        let hs = UnsafePointer(ws.hs[u].pointer)
        let dGx = UnsafePointer(ws.gates[u].pointer)
        let isGRU = config.cell == .gru
        // RNN/LSTM: W_hh sees the same gate gradients as W_ih; GRU: its own (dGh).
        let dGh = UnsafePointer(isGRU ? ws.dGh.pointer : ws.gates[u].pointer)
        // The previous state of packed row r is at prev + r*H; rows [first, last) have a
        // non-zero one (h0 = 0 rows contribute nothing to dW_hh and are skipped).
        let prev: UnsafePointer<Float>
        var first = 0, last = Np
        if !layout.packed {
            // Forward: h[t] precedes h[t+1] (h0 first); reverse: step t reads step t+1's output,
            // and h0 follows the last step.
            prev = d == 0 ? hs : hs + B * H
            if !hasInitialState {
                if d == 0 { first = B } else { last = Np - B }
            }
        } else {
            let buffer = ws.previous.pointer
            let h0 = hs + initialRow(unit: u, row: 0) * H
            for t in 0..<layout.steps {
                let (slot, fromSlot) = previous(unit: u, step: t)
                let dst = buffer + layout.rowStart[t] * H
                if fromSlot > 0 { dst.update(from: hs + slot * H, count: fromSlot * H) }
                let rest = layout.rowsAt[t] - fromSlot
                if rest > 0 { (dst + fromSlot * H).update(from: h0 + fromSlot * H, count: rest * H) }
            }
            prev = UnsafePointer(buffer)
            if !hasInitialState && d == 0 { first = layout.rowsAt[0] }
        }
        let oneHot = l == 0 && config.tokenInput && config.embeddingSize == nil
        let narrow = l == 0 && !config.tokenInput && o.inputs < Self.narrowInput
        let input: UnsafePointer<Float>? = l == 0 ? (oneHot ? nil : UnsafePointer(ws.xT.pointer)) : nil
        if !isGRU && !narrow && !oneHot && (l == 0 || D == 1) {
            // RNN/LSTM with one input block: dW_ih and dW_hh are products of the same
            // A = dGates^T; one call packs it once for both (over rows first..<last), then the
            // other rows of dW_ih.
            let x = input ?? layerOutput(ws, unit: (l - 1) * D)
            engine.multiply(transA: true, m: GH, k: last - first, a: dGh + first * GH, lda: GH,
                            GemmRightOperand(n: o.inputs, b: x + first * o.inputs, ldb: o.inputs,
                                             c: g + o.weightIH, ldc: o.inputs),
                            GemmRightOperand(n: H, b: prev + first * H, ldb: H, c: g + o.weightHH, ldc: H),
                            beta: 1)
            if first > 0 { gemm(true, false, GH, o.inputs, first, dGx, GH, x, o.inputs, 1, g + o.weightIH, o.inputs) }
            if last < Np {
                gemm(true, false, GH, o.inputs, Np - last, dGx + last * GH, GH, x + last * o.inputs, o.inputs, 1,
                     g + o.weightIH, o.inputs)
            }
        } else {
            if oneHot {
                Self.scatterColumns(dGx, rows: GH, ids: ws.tokenRows, order: ws.tokenOrder, count: Np, into: g + o.weightIH,
                                    columns: o.inputs)
            } else if narrow {
                // A narrow input (e.g. I = 5) makes (GH, I) a poor GEMM shape: compute
                // dW_ih^T (I, GH) = X^T dGx instead and add it transposed.
                let t = ws.weightGradientT.pointer
                gemm(true, false, o.inputs, GH, Np, input!, o.inputs, dGx, GH, 0, t, GH)
                let dW = g + o.weightIH
                for j in 0..<GH {
                    for i in 0..<o.inputs { dW[j * o.inputs + i] += t[i * GH + j] }
                }
            } else if let input {
                gemm(true, false, GH, o.inputs, Np, dGx, GH, input, o.inputs, 1, g + o.weightIH, o.inputs)
            } else {
                for e in 0..<D {
                    gemm(true, false, GH, H, Np, dGx, GH, layerOutput(ws, unit: (l - 1) * D + e), H, 1,
                         g + o.weightIH + e * H, o.inputs)
                }
            }
            if last > first {
                gemm(true, false, GH, H, last - first, dGh + first * GH, GH, prev + first * H, H, 1, g + o.weightHH, H)
            }
        }
        // Biases: b_ih's gradient is the sum of dGx over all rows, and so is b_hh's
        // (RNN/LSTM); the GRU's b_hr and b_hz share b_ir's and b_iz's, b_hn has its own
        // sums after the 3H of dGx.
        let dBias = ws.dBias.pointer
        for k in 0..<GH { g[o.biasIH + k] += dBias[k] }
        if isGRU {
            for k in 0..<(2 * H) { g[o.biasHH + k] += dBias[k] }
            for k in 0..<H { g[o.biasHH + 2 * H + k] += dBias[GH + k] }
        } else {
            for k in 0..<GH { g[o.biasHH + k] += dBias[k] }
        }
    }

    /// gates (count, rows) = columns ids[r] of W (rows, columns): the input projection of
    /// one-hot ids, W_ih x for x = e_id, without the one-hot matrix. Blocks of 8 rows of W, the
    /// rows visited in ascending id order (`order`), so that nearby ids share cache lines.
    static func gatherColumns(
        _ w: UnsafePointer<Float>, columns V: Int, rows GH: Int, ids: UnsafePointer<Int32>, order: UnsafePointer<Int32>,
        count: Int, into gates: UnsafeMutablePointer<Float>
    ) {
        var j = 0
        while j < GH {
            let n = min(Self.gatherBlock, GH - j)
            for i in 0..<count {
                let r = Int(order[i])
                let src = w + j * V + Int(ids[r])
                let dst = gates + r * GH + j
                for k in 0..<n { dst[k] = src[k * V] }
            }
            j += n
        }
    }

    /// dW (rows, columns): column ids[r] += row r of dGates (count, rows): the gradient of the
    /// gather above (the one-hot product's dW_ih), touching only the columns seen. Rows in
    /// ascending id order (`order`, stable: one column's rows are summed in row order).
    static func scatterColumns(
        _ dGates: UnsafePointer<Float>, rows GH: Int, ids: UnsafePointer<Int32>, order: UnsafePointer<Int32>, count: Int,
        into dW: UnsafeMutablePointer<Float>, columns V: Int
    ) {
        var j = 0
        while j < GH {
            let n = min(Self.gatherBlock, GH - j)
            for i in 0..<count {
                let r = Int(order[i])
                let dst = dW + j * V + Int(ids[r])
                let src = dGates + r * GH + j
                for k in 0..<n { dst[k * V] += src[k] }
            }
            j += n
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

/// The recurrent steps of one unit as a `ThreadTeam` task (one per network, reused).
final class RecurrentPassTask: TeamTask, @unchecked Sendable {
    unowned(unsafe) var network: RNNNetwork?
    var parameters: UnsafePointer<Float>?
    var dOut: UnsafePointer<Float>?
    var unit = 0
    var backward = false
    var members = 1

    func run(member: Int) {
        guard let network, let p = parameters else { return }
        if backward {
            network.backwardSteps(p, unit: unit, dOut: dOut!, member: member, of: members)
        } else {
            network.forwardSteps(p, unit: unit, member: member, of: members)
        }
    }
}
