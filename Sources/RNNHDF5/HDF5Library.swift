// Facts about the linked libhdf5.

import CHDF5

public enum HDF5Library {
    /// The linked library's version, e.g. "1.10.8".
    public static var version: String {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        _ = H5get_libversion(&major, &minor, &release)
        return "\(major).\(minor).\(release)"
    }

    /// Whether libhdf5 was built thread-safe (one global lock): only then may handles be
    /// used from several threads at once. Debian's serial build is.
    public static var isThreadSafe: Bool {
        var flag: hbool_t = false
        return H5is_library_threadsafe(&flag) >= 0 && flag
    }
}
