// `rnn-coord start`: flags -> TrainingConfig + CoordinatorOptions -> Coordinator.run.
import ArgumentParser
import Foundation
import RNNCore
import RNNDistributed
import RNNReport
import Logging

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train: validate the dataset, wait for workers (or start them), write checkpoints.",
        discussion: """
            Example (one machine, two worker processes):
              rnn-coord start --data datasets/digits/digits-train.h5 \\
                --val datasets/digits/digits-test.h5 --cell lstm --hidden 64 \\
                --batch-size 32 --epochs 10 --lr 0.01 --local-workers 2 \\
                --bind 'tcp://127.0.0.1:*' --checkpoint-dir runs/digits
            Across machines: '--workers N --bind tcp://0.0.0.0:5555' here, and
            'rnn-worker --connect tcp://THIS-HOST:5555' on each worker machine.
            Every flag can also come from a YAML file (--config run.yaml, keys
            are the flag names); flags typed here override the file.
            """
    )

    @OptionGroup(title: "Data") var data: DataFlags
    @OptionGroup(title: "Model") var model: ModelFlags
    @OptionGroup(title: "Optimizer") var optimizer: OptimizerFlags
    /// --lr-schedule and its settings, --warmup-steps, --momentum, --nesterov, --accumulate (TrainingOptions.swift).
    @OptionGroup(title: "Schedule, SGD, accumulation") var schedule: ScheduleOptions
    @OptionGroup(title: "Run") var training: RunFlags
    /// --val-split, --keep-best, --early-stopping (TrainingOptions.swift).
    @OptionGroup(title: "Validation and model selection") var selection: ValidationOptions
    @OptionGroup(title: "Workers and network") var network: NetworkFlags
    @OptionGroup(title: "Security") var security: SecurityFlags
    @OptionGroup(title: "Output") var output: OutputFlags
    /// --tensorboard, --log-scale (TrainingOptions.swift).
    @OptionGroup(title: "Reports") var report: ReportOptions

    /// The coordinator's numbers, checked by the library's own rules before any file is opened.
    var limits: CoordinatorLimits {
        CoordinatorLimits(workers: network.workers ?? network.localWorkers, minWorkers: network.minWorkers,
                          checkpointEvery: training.checkpointEvery, keep: training.keep,
                          joinTimeout: network.joinTimeout, stepTimeout: network.stepTimeout,
                          heartbeatInterval: network.heartbeatInterval, heartbeatTimeout: network.heartbeatTimeout,
                          spinMicroseconds: network.spin, maxStepsPerMessage: network.stepsPerMessage)
    }

    func validate() throws {
        do {
            try limits.validate()
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        let optimizerConfig = optimizer.config(momentum: schedule.momentum, nesterov: schedule.nesterov)
        let output = makeOutput()
        do {
            let m = model.options
            var config = try TrainingConfig.forDataset(
                files: data.data, valFiles: data.val, xName: data.xName, yName: data.yName, cell: model.cell, hiddenSize: model.hidden,
                layers: model.layers, optimizer: optimizerConfig, batchSize: training.batchSize, epochs: training.epochs, seed: training.seed,
                shuffle: training.shuffle, dropLast: training.dropLast, maxSteps: training.maxSteps, workerThreads: network.threads,
                embeddingSize: m.embedding, paddingIndex: m.paddingIdx, bidirectional: m.bidirectional, dropout: m.dropout,
                lengthsName: m.lengthsName == "lengths" ? nil : m.lengthsName)
            if network.compress != .none { config.gradientCompression = network.compress }
            if network.flatAllreduce { config.hierarchicalAllReduce = false }
            if network.noOverlap { config.overlapBackward = false }
            if network.allreduceCrossover != .measured { config.allReduceCrossover = network.allreduceCrossover }
            schedule.apply(to: &config)
            try selection.apply(to: &config, checkpointDir: training.checkpointDir)
            var options = CoordinatorOptions(
                config: config, bind: network.bind, workers: network.workers ?? network.localWorkers, checkpointDir: training.checkpointDir,
                checkpointEvery: training.checkpointEvery, keep: training.keep, resume: training.resume, joinTimeout: network.joinTimeout,
                stepTimeout: network.stepTimeout)
            options.recordLog = MetricsLog.opener
            options.spinMicroseconds = network.spin
            options.maxStepsPerMessage = network.stepsPerMessage
            options.balance = network.balance
            options.heartbeatInterval = network.heartbeatInterval
            options.heartbeatTimeout = network.heartbeatTimeout
            options.minWorkers = network.minWorkers
            try security.apply(to: &options)
            try options.validate()
            // Ctrl-C / SIGTERM: finish the step group in flight, checkpoint it, tell the workers.
            let stop = StopRequest()
            stop.onFirstSignal = { [logger = output.logger] sig in
                logger.warning("\(StopRequest.name(of: sig)): stopping after the current step (again: exit at once)")
            }
            stop.installSignalHandlers()
            options.stop = stop
            output.announce(effectiveConfig(config), checkpointDir: training.checkpointDir, resuming: training.resume != nil)
            let tensorboard = try report.tensorboardWriter()
            let coordinator = try Coordinator(options: options, events: tensorboard?.tee(output.events) ?? output.events)
            var group: LocalWorkerGroup?
            if network.localWorkers > 0 {
                guard security.curveKey == nil else {
                    throw ValidationError("'--local-workers' cannot be combined with '--curve-key'; start rnn-worker with its own key instead.")
                }
                group = try LocalWorkerGroup(count: network.localWorkers, executable: LocalWorkerGroup.siblingExecutable(),
                                             endpoint: coordinator.localEndpoint ?? coordinator.endpoint,
                                             extraArguments: output.localWorkerArguments + ["--spin", "\(network.spin)"],
                                             environment: coordinator.token.map { ["RNN_TOKEN": $0] } ?? [:])
                let pids = group!.pids
                stop.atForcedExit { for pid in pids { kill(pid, SIGKILL) } }
            }
            let summary: TrainingSummary
            do {
                summary = try coordinator.run()
            } catch {
                group?.stop(waitSeconds: 2)
                tensorboard?.flush()
                throw error
            }
            group?.stop(waitSeconds: 10)
            tensorboard?.flush()
            output.finish(summary, config: config, checkpointDir: training.checkpointDir, plot: !self.output.noPlot, logScale: report.logScale ? true : nil)
        } catch let error as ValidationError {
            throw error
        } catch let interrupted as Interrupted {
            output.logger.error("\(interrupted)")
            throw ExitCode(interrupted.exitCode)
        } catch {
            output.logger.error("\(error)")
            throw ExitCode(1)
        }
    }
}
