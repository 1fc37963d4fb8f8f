// `--compress none|bf16` (GradientCompression lives in RNNDistributed, which knows nothing of
// the command line).
import ArgumentParser
import RNNDistributed

extension GradientCompression: ExpressibleByArgument {}
