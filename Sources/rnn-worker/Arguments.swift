import ArgumentParser
import Logging
import RNNReport

extension LogFormat: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
