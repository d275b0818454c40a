import Foundation

/// Runs async work to completion from synchronous code (the CLI's commands, the
/// benchmark), on the cooperative pool, blocking the calling thread meanwhile.
public enum Blocking {
    public static func run<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
        let box = Box<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { box.result = .success(try await work()) } catch { box.result = .failure(error) }
            done.signal()
        }
        done.wait()
        return try box.result!.get()
    }

    /// Written by the task before it signals, read after the wait.
    private final class Box<T>: @unchecked Sendable {
        var result: Result<T, any Error>?
    }
}
