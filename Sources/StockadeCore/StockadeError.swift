/// The one error type of the stockade package.
///
/// Messages follow the form "failed to <do what>: <why>. <what to do>". A denied action
/// is a decision and a non-zero exit is a result: neither is ever a `StockadeError`.
/// `code` is a struct wrapping a private enum so that codes can be added without
/// breaking callers that switch over them with a default case.
public struct StockadeError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; stable across releases.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case invalidArgument, invalidPolicy, unsupported, startFailed
            case notFound, notExecutable, limitExceeded, hostFacility, internalError
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// A flag or an argument of an API call is malformed.
        public static let invalidArgument = Code(.invalidArgument)
        /// A policy file is malformed or asks for something invalid.
        public static let invalidPolicy = Code(.invalidPolicy)
        /// The request is valid but this host or tier cannot do it.
        public static let unsupported = Code(.unsupported)
        /// The sandbox could not be started.
        public static let startFailed = Code(.startFailed)
        /// The command does not exist inside the sandbox.
        public static let notFound = Code(.notFound)
        /// The command exists inside the sandbox but cannot be executed.
        public static let notExecutable = Code(.notExecutable)
        /// A resource limit ended the sandbox.
        public static let limitExceeded = Code(.limitExceeded)
        /// A kernel facility (cgroups, namespaces, seccomp) failed.
        public static let hostFacility = Code(.hostFacility)
        /// A bug in stockade.
        public static let internalError = Code(.internalError)

        public var description: String { value.rawValue }
    }

    public let code: Code
    public let message: String
    public let cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}
