// A fixed team of threads for the parallel parts of a training step: the caller is member 0,
// `size - 1` helper threads (started on first use, kept until the team goes away) are members
// 1 ..< size. `run` hands one task to every member and returns when all have finished; a task
// with phases (the recurrent steps: a product, a gate kernel, the next step's product needs
// every member's outputs) calls `barrier` between them.
//
// Why not `DispatchQueue.concurrentPerform`: it allocates on every call (AllocationTests saw
// 15 malloc calls per step of a 2-layer LSTM H=128 at 2 threads), gives no barrier, and may
// run all iterations on the calling thread, so a task that waits for another member would
// deadlock.
//
// Waiting: a member that must wait first polls its semaphore for a short while (the other
// member is usually a few microseconds away: one step of lstm-large is ~0.6 ms per member),
// then blocks on it. Polling is bounded, so a preempted partner on a shared 2-core machine
// costs a futex sleep, not a spinning core (PLATFORM.md: do not spin-wait on 2 cores).
import Dispatch
import Foundation

/// Work for every member of a `ThreadTeam`: `run(member:)` is called once per member, on
/// that member's thread, for one `ThreadTeam.run`.
protocol TeamTask: AnyObject {
    func run(member: Int)
}

final class ThreadTeam: @unchecked Sendable {
    /// Members, the caller included.
    let size: Int
    private let shared: Shared

    /// What the helper threads hold: the current task, a start and a barrier semaphore per
    /// member, and one completion semaphore.
    private final class Shared: @unchecked Sendable {
        var task: TeamTask?
        var stopping = false
        let start: [DispatchSemaphore]
        let arrived: [DispatchSemaphore]
        let done = DispatchSemaphore(value: 0)
        init(size: Int) {
            start = (0..<size).map { _ in DispatchSemaphore(value: 0) }
            arrived = (0..<size).map { _ in DispatchSemaphore(value: 0) }
        }
    }
    private var started = false

    init(size: Int) {
        precondition(size >= 1, "ThreadTeam needs at least one member")
        self.size = size
        shared = Shared(size: size)
    }

    deinit {
        guard started else { return }
        shared.stopping = true
        for i in 1..<size { shared.start[i].signal() }
    }

    private func startHelpers() {
        started = true
        for i in 1..<size {
            let shared = self.shared
            let thread = Thread {
                while true {
                    shared.start[i].wait()
                    if shared.stopping { return }
                    shared.task!.run(member: i)
                    shared.done.signal()
                }
            }
            thread.name = "rnn-team-\(i)"
            thread.start()
        }
    }

    /// Runs task.run(member: i) for every member i at once (member 0 on the calling thread)
    /// and returns when all have returned. Not reentrant: one `run` at a time per team.
    func run(_ task: TeamTask) {
        if size == 1 {
            task.run(member: 0)
            return
        }
        if !started { startHelpers() }
        shared.task = task
        for i in 1..<size { shared.start[i].signal() }
        task.run(member: 0)
        for _ in 1..<size { Self.wait(shared.done) }
        shared.task = nil
    }

    /// Called by every member of a running task: returns once all members have called it (as
    /// often as this member has). Each arrival signals every other member's semaphore and
    /// waits for size - 1 signals on its own; a member cannot pass barrier k + 1 before all
    /// have arrived at k, so early signals of the next barrier only ever count for that one.
    func barrier(member: Int) {
        if size == 1 { return }
        for i in 0..<size where i != member { shared.arrived[i].signal() }
        for _ in 1..<size { Self.wait(shared.arrived[member]) }
    }

    /// Polls `semaphore` up to `pollLimit` times, then blocks on it.
    private static func wait(_ semaphore: DispatchSemaphore) {
        for _ in 0..<pollLimit where semaphore.wait(timeout: .now()) == .success { return }
        semaphore.wait()
    }

    /// Polls before blocking: about 20-40 µs at ~10-20 ns per poll.
    private static let pollLimit = 2000
}
