// Overlap of the all-reduce with backward (`rnn-coord start`, on unless `--no-overlap`).
//
// Buckets. Backward finishes the flat gradient in pieces (`RNNNetwork.gradientSegments`): the
// head, then layer L-1 (both directions of a bidirectional layer together) down to layer 0,
// then the embedding; each piece sits directly below the previous one in the flat layout. A
// bucket is a run of consecutive pieces, so it is one contiguous range of the all-reduce
// buffer; pieces are joined until a bucket holds at least `minimumBytes` (a message's fixed
// cost then does not dominate), and a last bucket smaller than that joins the one before it.
// The scored-count scalar (after the gradients in `AllReduceBuffer`) belongs to the first
// bucket, which ends where the buffer ends: the worker knows the count before backward starts
// (`RNNNetwork.scoredCount`), so every bucket stays one contiguous range. The plan depends only
// on the model, so every rank cuts the same buckets.
//
// Bucket k of global step s is all-reduced as its own `allReduceSum` call, tagged
// (s + 1) * 65536 + k in the frame header's step field (`tag`): frames of the next bucket that
// arrive early are kept aside like frames of the next step, and stale ones are dropped as
// before. Tags below 65536 belong to the crossover measurement a new ring runs before its
// first step (AllReduceCrossover.swift).
//
// Bitwise equality: with overlap the buckets are reduced by `BucketReducer`'s thread as they
// become ready, without it by the calling thread after backward, but in both cases the same
// ranges with the same calls in the same order, so the results are the same bits. The
// algorithm is chosen per bucket by its size (`RingAllReduce.chosenAlgorithm`); at W = 2 the
// exchange adds a + b on both ranks, which does not depend on the cut, so W = 2 results are
// also the same bits as the unbucketed path's.
import Foundation
import RNNTransport

/// Contiguous ranges of the all-reduce buffer, in the order backward completes them.
public struct GradientBuckets: Equatable, Sendable {
    public struct Bucket: Equatable, Sendable {
        /// Floats of the all-reduce buffer (gradients, and for bucket 0 the scalars after them).
        public var range: Range<Int>
        /// How many leading floats of `range` are gradients (travel as bf16 with `--compress bf16`).
        public var compressedCount: Int
        /// The bucket is final once segments 0 ... `lastSegment` have been reported.
        public var lastSegment: Int
    }

    /// Buckets below this size are joined with a neighbour (256 KiB: at 1 Gbit/s about 2 ms
    /// on the wire, against tens of microseconds of per-message cost).
    public static let defaultMinimumBytes = 256 * 1024
    /// Tags per global step (`tag`); a plan never has more buckets.
    public static let tagsPerStep: UInt64 = 1 << 16

    public let buckets: [Bucket]

    /// `segments`: the gradient ranges in completion order, each directly below the previous
    /// one, together covering `0 ..< gradientCount` (`RNNNetwork.gradientSegments`).
    public init(segments: [Range<Int>], gradientCount: Int, scalarCount: Int, minimumBytes: Int = defaultMinimumBytes) {
        precondition(!segments.isEmpty && segments.count < Int(Self.tagsPerStep), "between 1 and 65535 segments")
        precondition(segments[0].upperBound == gradientCount && segments.last!.lowerBound == 0, "segments must cover the gradient")
        var plan: [Bucket] = []
        var open: Range<Int>?
        var below = gradientCount
        for (i, segment) in segments.enumerated() {
            precondition(segment.upperBound == below, "segment \(i) is not directly below the previous one")
            below = segment.lowerBound
            let range = segment.lowerBound..<(open?.upperBound ?? segment.upperBound)
            if range.count * 4 >= minimumBytes || i == segments.count - 1 {
                plan.append(Bucket(range: range, compressedCount: range.count, lastSegment: i))
                open = nil
            } else {
                open = range
            }
        }
        // A small last bucket joins the one before it.
        if plan.count >= 2, plan.last!.range.count * 4 < minimumBytes {
            let last = plan.removeLast()
            let range = last.range.lowerBound..<plan[plan.count - 1].range.upperBound
            plan[plan.count - 1] = Bucket(range: range, compressedCount: range.count, lastSegment: last.lastSegment)
        }
        // The scalars travel with the first bucket (float32, after its gradients).
        plan[0].range = plan[0].range.lowerBound..<(gradientCount + scalarCount)
        buckets = plan
    }

    public var count: Int { buckets.count }

    /// The frame-header step of bucket `k` of global step `step` (tags below `tagsPerStep` are
    /// the crossover measurement's).
    public static func tag(step: UInt64, bucket k: Int) -> UInt64 { (step &+ 1) &* tagsPerStep &+ UInt64(k) }
}

extension AllReduceError {
    /// Testing (`WorkerOptions.failBucketAt`): bucket `bucket` of global step `step` breaks.
    static func injectedFailure(step: UInt64, bucket: Int) -> AllReduceError {
        .transport(ZMQError(call: "test: failure injected in bucket \(bucket) of global step \(step)", endpoint: nil, errno: 0))
    }
}

extension AllReduceBuffer {
    /// All-reduces bucket `k` of `plan` (its floats only), tagged for global step `step`.
    public func allReduce(bucket k: Int, of plan: GradientBuckets, with ring: RingAllReduce, step: UInt64) throws(AllReduceError) {
        let b = plan.buckets[k]
        let result: Result<Void, AllReduceError> = withUnsafeMutableBufferPointer { all in
            do throws(AllReduceError) {
                try ring.allReduceSum(UnsafeMutableBufferPointer(rebasing: all[b.range]), step: GradientBuckets.tag(step: step, bucket: k),
                                      compressedCount: b.compressedCount)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }
}

/// A communication thread that all-reduces the buckets of one step in order, each as soon as
/// backward reports it final (`segmentReady`), while the calling thread still computes the
/// layers below. Between `begin` and `finish`/`cancel` the ring (its ZeroMQ sockets and its
/// `interruptCheck`, which reads the worker's control socket) belongs to this thread; the
/// caller must not touch them. The condition's lock orders every hand-over. The thread is
/// started on first use and parks between steps (no spinning).
final class BucketReducer: @unchecked Sendable {
    private let condition = NSCondition()
    private var thread: Thread?
    private var shuttingDown = false
    // One step's job, guarded by `condition`.
    private var job: Job?
    private var readySegments = 0
    private var cancelled = false
    private var done = true
    private var failure: AllReduceError?
    private var busyNanoseconds: UInt64 = 0
    /// The ring's own `interruptCheck`, put back when the step ends.
    private var originalCheck: (() -> Bool)?

    private struct Job {
        let ring: RingAllReduce
        let buffer: AllReduceBuffer
        let plan: GradientBuckets
        let step: UInt64
        let failAt: Int?
    }

    /// Hands the ring over and starts waiting for the buckets of `step`. Testing: `failAt`
    /// makes that bucket fail as a broken connection would.
    func begin(ring: RingAllReduce, buffer: AllReduceBuffer, plan: GradientBuckets, step: UInt64, failAt: Int? = nil) {
        condition.lock()
        defer { condition.unlock() }
        precondition(done, "BucketReducer.begin while a step is still running")
        if thread == nil {
            let t = Thread { [self] in loop() }
            t.name = "rnn-allreduce"
            thread = t
            t.start()
        }
        // While a wait for a peer polls, a cancelled step gives up at once.
        let check = ring.interruptCheck
        ring.interruptCheck = { [self] in isCancelled || (check?() ?? false) }
        job = Job(ring: ring, buffer: buffer, plan: plan, step: step, failAt: failAt)
        readySegments = 0
        cancelled = false
        done = false
        failure = nil
        busyNanoseconds = 0
        originalCheck = check
        condition.broadcast()
    }

    private var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    /// Backward finished one more of the network's gradient segments (in order).
    func segmentReady() {
        condition.lock()
        readySegments += 1
        condition.broadcast()
        condition.unlock()
    }

    /// Marks everything ready, waits for the last bucket and takes the ring back. Returns the
    /// seconds the thread spent inside the buckets' all-reduces; throws the first failure.
    func finish() throws(AllReduceError) -> Double {
        let (busy, error) = end(cancel: false)
        if let error { throw error }
        return busy
    }

    /// Abandons the step (the caller failed): stops at the next bucket or poll and waits.
    func cancel() { _ = end(cancel: true) }

    private func end(cancel: Bool) -> (Double, AllReduceError?) {
        condition.lock()
        defer { condition.unlock() }
        guard let job else { return (Double(busyNanoseconds) / 1e9, failure) }
        readySegments = Int.max
        if cancel { cancelled = true }
        condition.broadcast()
        while !done { condition.wait() }
        job.ring.interruptCheck = originalCheck
        originalCheck = nil
        self.job = nil
        return (Double(busyNanoseconds) / 1e9, failure)
    }

    /// Ends the thread (after the current step, if any).
    func shutDown() {
        condition.lock()
        shuttingDown = true
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        condition.lock()
        defer { condition.unlock() }
        while true {
            while (job == nil || done) && !shuttingDown { condition.wait() }
            guard let job, !done else { return }
            for k in 0..<job.plan.count {
                while readySegments <= job.plan.buckets[k].lastSegment && !cancelled { condition.wait() }
                if cancelled { break }
                condition.unlock()
                let started = monotonicNanoseconds()
                var error: AllReduceError?
                do throws(AllReduceError) {
                    if job.failAt == k { throw AllReduceError.injectedFailure(step: job.step, bucket: k) }
                    try job.buffer.allReduce(bucket: k, of: job.plan, with: job.ring, step: job.step)
                } catch let e {
                    error = e
                }
                let took = monotonicNanoseconds() - started
                condition.lock()
                busyNanoseconds += took
                if let error {
                    failure = error
                    break
                }
            }
            done = true
            condition.broadcast()
        }
    }
}
