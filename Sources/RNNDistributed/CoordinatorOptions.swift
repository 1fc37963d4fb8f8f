// What the coordinator is told (CoordinatorOptions, checked in one place: `validate`) and
// what it reports at the end (TrainingSummary).
import Foundation
import RNNCore

/// How the coordinator runs.
public struct CoordinatorOptions: Sendable {
    public var config: TrainingConfig
    /// The ROUTER endpoint, e.g. `tcp://127.0.0.1:5555` (`*` as the port picks a free one).
    public var bind: String
    /// Workers that must join before training starts.
    public var workers: Int
    /// Where checkpoints (and metrics.jsonl) go; nil writes none.
    public var checkpointDir: String?
    /// A checkpoint every this many global steps (0: only at the end).
    public var checkpointEvery: Int
    /// Checkpoints kept.
    public var keep: Int
    /// Opens the step and epoch record log in `checkpointDir` (RNNReport's `MetricsLog.opener`
    /// writes metrics.jsonl); nil writes none.
    public var recordLog: RunRecordLogOpener?
    /// Continue from the newest valid checkpoint in this folder.
    public var resume: String?
    /// Seconds to wait for all workers to join.
    public var joinTimeout: Double
    /// Seconds to wait for every worker's result of one step.
    public var stepTimeout: Double
    /// Seconds a worker waits for one ring frame.
    public var ringTimeout: Double
    /// Seconds between heartbeats (both ways).
    public var heartbeatInterval: Double = 1
    /// A worker silent this long is declared lost (and a worker whose heartbeats stay
    /// unanswered this long declares the coordinator lost).
    public var heartbeatTimeout: Double = 10
    /// Below this many live workers the run stops with a checkpoint and a named error.
    public var minWorkers: Int = 1
    /// The run token workers must present (loopback security); nil draws a random one.
    /// Not used with CURVE (the allow-list authenticates).
    public var token: String?
    /// Where the token is written for local workers (nil: `RunToken.defaultPath`, only for
    /// loopback binds).
    public var tokenFile: String?
    /// CURVE encryption and the allow-list of worker keys.
    public var curve: CurveServerConfig?
    /// Allows a non-loopback bind without CURVE.
    public var insecure = false
    /// Times a step is redone after failed all-reduces with no worker lost.
    public var maxStepRetries = 3
    /// How long a wait for the workers' messages keeps polling (yielding the CPU between
    /// tries) before it sleeps, in microseconds; 0 sleeps at once. The two workers' results
    /// of a step arrive microseconds apart: catching the second without a thread wakeup
    /// took seed-small with 2 local workers from ~150k to ~175-190k samples/s on the 2-core
    /// KVM machine (`rnn-bench distributed --spin 0` vs the default). Not while a step group
    /// takes more than twice `messageGroupSeconds`: the next group has gone out ahead, the
    /// coordinator's wake-up is off the workers' path, and a spin would only take CPU from a
    /// local worker (lstm-med: the coordinator's main thread used 0.5 % of a core, spinning
    /// twice per step).
    public var spinMicroseconds = 100
    /// Short steps go out several per STEP message (and come back several per METRICS): up to
    /// this many consecutive steps, as many as take about `messageGroupSeconds` at the
    /// measured step time, never across an epoch end, a checkpoint or the last step. 1 sends
    /// one message per step. Each message costs thread wakeups in three processes; seed-small
    /// with 2 local workers (~0.2 ms steps) went from ~107k to ~147k samples/s with 8
    /// (`rnn-bench distributed --steps-per-message 1` vs the default, same run, busy machine).
    public var maxStepsPerMessage = 8
    /// The time one STEP message's steps should take (see `maxStepsPerMessage`).
    public var messageGroupSeconds = 0.001
    /// Load balancing (`--balance`): each step's rows are split among the workers in
    /// proportion to their measured speed (rows per second of forward, backward and update,
    /// an exponential average over recent steps) instead of evenly, so a worker on a slower
    /// or busier machine gets fewer rows and the others wait less for it. The mean gradient
    /// is the same up to float summation order (any split is), and the replicas stay bitwise
    /// identical; but the split follows timing, so two runs are no longer bitwise equal, nor
    /// a resumed run to a straight one. Off: near-equal splits, bitwise reproducible.
    public var balance = false
    /// With `balance`: the weight of the newest step in the speed average.
    public var balanceSmoothing = 0.25
    /// SIGINT/SIGTERM (see StopRequest.swift): checked between step groups; the run then ends
    /// with a checkpoint of the last completed step and throws `Interrupted`.
    public var stop: StopRequest?

    public init(config: TrainingConfig, bind: String = "tcp://127.0.0.1:5555", workers: Int = 1,
                checkpointDir: String? = nil, checkpointEvery: Int = 0, keep: Int = 3, resume: String? = nil,
                joinTimeout: Double = 120, stepTimeout: Double = 600, ringTimeout: Double = 60) {
        self.config = config
        self.bind = bind
        self.workers = workers
        self.checkpointDir = checkpointDir
        self.checkpointEvery = checkpointEvery
        self.keep = keep
        self.resume = resume
        self.joinTimeout = joinTimeout
        self.stepTimeout = stepTimeout
        self.ringTimeout = ringTimeout
    }

    /// The coordinator's own numbers (see `CoordinatorLimits`).
    public var limits: CoordinatorLimits {
        CoordinatorLimits(workers: workers, minWorkers: minWorkers, checkpointEvery: checkpointEvery, keep: keep,
                          joinTimeout: joinTimeout, stepTimeout: stepTimeout, ringTimeout: ringTimeout,
                          heartbeatInterval: heartbeatInterval, heartbeatTimeout: heartbeatTimeout,
                          spinMicroseconds: spinMicroseconds, maxStepsPerMessage: maxStepsPerMessage, balanceSmoothing: balanceSmoothing)
    }

    public func validate() throws {
        try config.validate()
        try limits.validate()
        if curve == nil && !insecure, let host = Endpoint.host(of: bind), !Endpoint.isLoopback(host) {
            throw ConfigError("binding the coordinator to \(bind) (not loopback) without CURVE keys lets anyone on the network join; "
                + "give '--curve-key' and '--allow' (see `rnn-coord keygen`), or pass '--insecure' explicitly")
        }
    }
}

/// The coordinator's numbers (not the training config's), checked in one place: by
/// `CoordinatorOptions.validate()` and by `rnn-coord start` before it opens any file. Each
/// message names the flag of `rnn-coord start`.
public struct CoordinatorLimits: Sendable {
    public var workers: Int
    public var minWorkers: Int
    public var checkpointEvery: Int
    public var keep: Int
    public var joinTimeout: Double
    public var stepTimeout: Double
    public var ringTimeout: Double
    public var heartbeatInterval: Double
    public var heartbeatTimeout: Double
    public var spinMicroseconds: Int
    public var maxStepsPerMessage: Int
    public var balanceSmoothing: Double

    public init(workers: Int, minWorkers: Int = 1, checkpointEvery: Int = 0, keep: Int = 3, joinTimeout: Double = 120,
                stepTimeout: Double = 600, ringTimeout: Double = 60, heartbeatInterval: Double = 1, heartbeatTimeout: Double = 10,
                spinMicroseconds: Int = 100, maxStepsPerMessage: Int = 8, balanceSmoothing: Double = 0.25) {
        self.workers = workers
        self.minWorkers = minWorkers
        self.checkpointEvery = checkpointEvery
        self.keep = keep
        self.joinTimeout = joinTimeout
        self.stepTimeout = stepTimeout
        self.ringTimeout = ringTimeout
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.spinMicroseconds = spinMicroseconds
        self.maxStepsPerMessage = maxStepsPerMessage
        self.balanceSmoothing = balanceSmoothing
    }

    public func validate() throws(ConfigError) {
        if workers < 1 { throw ConfigError("Please specify '--workers' of at least 1.") }
        if minWorkers < 1 { throw ConfigError("Please specify '--min-workers' of at least 1.") }
        if minWorkers > workers { throw ConfigError("'--min-workers' (\(minWorkers)) cannot exceed '--workers' (\(workers)).") }
        if checkpointEvery < 0 { throw ConfigError("Please specify '--checkpoint-every' of 0 or more, found \(checkpointEvery).") }
        if keep < 1 { throw ConfigError("Please specify '--keep' of at least 1 (checkpoints kept), found \(keep).") }
        for (flag, seconds) in [("'--join-timeout'", joinTimeout), ("'--step-timeout'", stepTimeout), ("ring timeout", ringTimeout)]
            where !(seconds > 0) || !seconds.isFinite {
            throw ConfigError("Please specify a positive \(flag) in seconds, found \(seconds).")
        }
        if !(heartbeatTimeout > 0) || !(heartbeatInterval > 0) || heartbeatInterval >= heartbeatTimeout || !heartbeatTimeout.isFinite {
            throw ConfigError("Please specify a positive '--heartbeat-interval' shorter than '--heartbeat-timeout', found \(heartbeatInterval) s and \(heartbeatTimeout) s.")
        }
        if spinMicroseconds < 0 { throw ConfigError("Please specify '--spin' of 0 or more microseconds, found \(spinMicroseconds).") }
        if !(1...maxStepsPerMessageLimit).contains(maxStepsPerMessage) {
            throw ConfigError("Please specify '--steps-per-message' from 1 to \(maxStepsPerMessageLimit), found \(maxStepsPerMessage).")
        }
        if !(balanceSmoothing > 0 && balanceSmoothing <= 1) {
            throw ConfigError("the balance smoothing must be in (0, 1], found \(balanceSmoothing)")
        }
    }
}

/// Loss and accuracy over some samples.
public struct EvalResult: Sendable, Equatable {
    public var loss: Double
    /// nil for regression.
    public var accuracy: Double?
}

/// What a finished run reports.
public struct TrainingSummary: Sendable {
    public var globalSteps: Int
    public var epochsCompleted: Int
    /// Mean training loss and accuracy of the last epoch.
    public var train: EvalResult
    public var validation: EvalResult?
    /// --keep-best / --early-stopping: the best epoch (1-based), its value, best.h5, and
    /// whether early stopping ended the run.
    public var best: BestTracker?
    public var bestCheckpoint: String?
    public var stoppedEarly = false
    public var parameters: [Float]
    /// Checkpoints written, oldest first (only the last `keep` still exist).
    public var checkpoints: [String]
    /// Training samples per second of step time (evaluation and checkpoints excluded).
    public var samplesPerSecond: Double
    /// Frames the coordinator rejected (malformed, foreign, unexpected, stale).
    public var rejectedFrames: Int
    /// Rejected frames by reason.
    public var rejectedByReason: [String: Int] = [:]
    /// Peers refused at the door (wrong token, key not allowed, wrong version).
    public var rejectedPeers: Int = 0
    /// Workers declared lost, as "rank r (host, pid p): why".
    public var lostWorkers: [String] = []
    /// Times the ring was re-formed after the start (losses and joins).
    public var reforms: Int = 0
    /// Steps redone after an abandoned attempt.
    public var redoneSteps: Int = 0
    /// The live workers at the end.
    public var finalWorld: Int = 0
}

/// A coordinator failure, naming the rank, the endpoint or the file.
public struct CoordinatorError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

