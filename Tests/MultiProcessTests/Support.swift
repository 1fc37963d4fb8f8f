// The process runner and the network-namespace hosts live in MultiProcessSupport, shared with
// MultiHostTests; re-exported here so every file of this target sees them.
@_exported import MultiProcessSupport
