// The coordinator's scheduling decisions as a value (no sockets, no clocks): how many steps one
// STEP message carries, whether the next group may go out before the current one is
// collected, how a step's rows are split among the ranks, and the measurements these follow.
// Tested on its own (StepSchedulerTests).
import RNNData

struct StepScheduler: Equatable {
    /// Upper bound of steps per STEP message (`CoordinatorOptions.maxStepsPerMessage`).
    let maxStepsPerMessage: Int
    /// The time one STEP message's steps should take.
    let messageGroupSeconds: Double
    /// A checkpoint every this many global steps (0: none during the run); no group crosses one.
    let checkpointEvery: Int
    /// `--max-steps`: no group goes past it.
    let maxSteps: Int?
    /// `--balance`: rows in proportion to the ranks' measured speeds.
    let balance: Bool
    /// With `balance`: the weight of the newest step in the speed average.
    let balanceSmoothing: Double

    /// Steps per STEP message now: starts at 1 and follows the measured step time.
    private(set) var stepsPerMessage = 1
    /// The last group took longer than 2 x `messageGroupSeconds`: the next group has gone out
    /// ahead, so waits need not spin.
    private(set) var longGroups = false
    /// With `balance`: per rank, the averaged seconds per row (0: not measured yet).
    private(set) var secondsPerRow: [Double] = []

    init(maxStepsPerMessage: Int, messageGroupSeconds: Double, checkpointEvery: Int, maxSteps: Int?,
         balance: Bool = false, balanceSmoothing: Double = 0.25) {
        self.maxStepsPerMessage = maxStepsPerMessage
        self.messageGroupSeconds = messageGroupSeconds
        self.checkpointEvery = checkpointEvery
        self.maxSteps = maxSteps
        self.balance = balance
        self.balanceSmoothing = balanceSmoothing
    }

    init(options: CoordinatorOptions) {
        self.init(maxStepsPerMessage: options.maxStepsPerMessage, messageGroupSeconds: options.messageGroupSeconds,
                  checkpointEvery: options.checkpointEvery, maxSteps: options.config.maxSteps,
                  balance: options.balance, balanceSmoothing: options.balanceSmoothing)
    }

    /// A new ring of `world` ranks: ranks change with the membership, so speeds are measured again.
    mutating func reset(world: Int) {
        secondsPerRow = [Double](repeating: 0, count: world)
    }

    /// The steps of the group that starts at step `s` of an epoch of `stepsInEpoch` steps
    /// (global step `g`): at most `stepsPerMessage`, ending at the latest at the epoch's end,
    /// at `maxSteps` and at a checkpoint; at least 1.
    func groupSize(stepsInEpoch: Int, from s: Int, globalStep g: Int) -> Int {
        var n = min(stepsPerMessage, stepsInEpoch - s)
        if let maxSteps { n = min(n, maxSteps - g) }
        if checkpointEvery > 0 { n = min(n, checkpointEvery - g % checkpointEvery) }
        return max(1, n)
    }

    /// Whether the group after the one of `count` steps from step `s` (global step `g`) may go
    /// out before that one is collected (pipelining): not across an epoch end, `maxSteps` or a
    /// checkpoint, and not while workers wait to join or a stop is requested, since the workers
    /// must be idle after this group for those.
    func mayAssignAhead(stepsInEpoch: Int, from s: Int, count: Int, globalStep g: Int, joinsPending: Bool, stopping: Bool) -> Bool {
        let next = g + count
        if s + count >= stepsInEpoch || joinsPending || stopping { return false }
        if let maxSteps, next >= maxSteps { return false }
        return !(checkpointEvery > 0 && next % checkpointEvery == 0)
    }

    /// The parts (offsets into the step's block of `rows` rows, in rank order) for `world`
    /// ranks: near-equal, or with `balance` and every rank measured, in proportion to the
    /// ranks' speeds, each keeping at least a quarter of an equal share and one row (so that
    /// its speed stays measured).
    func parts(rows: Int, world: Int) -> [Range<Int>] {
        guard balance, secondsPerRow.count == world, secondsPerRow.allSatisfy({ $0 > 0 }) else {
            return (0..<world).map { EpochPlan.shardRange(count: rows, rank: $0, worldSize: world) }
        }
        return EpochPlan.shardRanges(count: rows, weights: secondsPerRow.map { 1 / $0 }, minimum: max(1, rows / (4 * world)))
    }

    /// A group of `steps` steps took `seconds` from assignment to collection; `results` are its
    /// METRICS as [step][rank]. The next group's size follows the time per step; with
    /// `balance` each rank's seconds per row go into its running average.
    mutating func observe(seconds: Double, steps: Int, results: [[MetricsMessage]]) {
        let perStep = seconds / Double(steps)
        stepsPerMessage = max(1, min(maxStepsPerMessage, Int(messageGroupSeconds / max(perStep, 1e-9))))
        longGroups = seconds > 2 * messageGroupSeconds
        guard balance else { return }
        for stepResults in results where stepResults.count == secondsPerRow.count {
            for (rank, r) in stepResults.enumerated() where r.samples > 0 && r.computeSeconds > 0 {
                let sample = r.computeSeconds / Double(r.samples)
                let old = secondsPerRow[rank]
                secondsPerRow[rank] = old == 0 ? sample : old + balanceSmoothing * (sample - old)
            }
        }
    }
}
