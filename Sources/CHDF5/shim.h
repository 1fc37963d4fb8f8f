#ifndef CHDF5_SHIM_H
#define CHDF5_SHIM_H
#include <hdf5.h>

// Swift cannot import C macros that expand to expressions (H5T_NATIVE_FLOAT is
// `(H5OPEN H5T_NATIVE_FLOAT_g)`, H5F_ACC_RDONLY calls H5check), and the `_g` globals behind
// them are mutable C globals that Swift 6 rejects as concurrency-unsafe. These static inline
// functions give Swift a plain call for each macro it needs; their names carry the target's
// name (CHDF5_...) so they never clash with libhdf5's own symbols.

// Predefined native memory types.
static inline hid_t CHDF5_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t CHDF5_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t CHDF5_H5T_NATIVE_INT8(void) { return H5T_NATIVE_INT8; }
static inline hid_t CHDF5_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t CHDF5_H5T_NATIVE_INT16(void) { return H5T_NATIVE_INT16; }
static inline hid_t CHDF5_H5T_NATIVE_UINT16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t CHDF5_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t CHDF5_H5T_NATIVE_UINT32(void) { return H5T_NATIVE_UINT32; }
static inline hid_t CHDF5_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t CHDF5_H5T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
// Standard file types with an explicit byte order (used to write test files).
static inline hid_t CHDF5_H5T_IEEE_F32BE(void) { return H5T_IEEE_F32BE; }
static inline hid_t CHDF5_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t CHDF5_H5T_C_S1(void) { return H5T_C_S1; }

// File access flags (macros that call H5check()).
static inline unsigned CHDF5_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned CHDF5_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned CHDF5_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned CHDF5_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }

// Default property list, default error stack, "all" dataspace selection (plain 0 casts).
static inline hid_t CHDF5_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t CHDF5_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t CHDF5_H5S_ALL(void) { return H5S_ALL; }

// Property list classes.
static inline hid_t CHDF5_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t CHDF5_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t CHDF5_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t CHDF5_H5P_DATASET_ACCESS(void) { return H5P_DATASET_ACCESS; }
static inline hid_t CHDF5_H5P_DATASET_XFER(void) { return H5P_DATASET_XFER; }
static inline hid_t CHDF5_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }

// Size of an unlimited dimension and "use the library default" for chunk-cache settings.
static inline hsize_t CHDF5_H5S_UNLIMITED(void) { return H5S_UNLIMITED; }
static inline double CHDF5_H5D_CHUNK_CACHE_W0_DEFAULT(void) { return H5D_CHUNK_CACHE_W0_DEFAULT; }
// Length marker of a variable-length string type.
static inline size_t CHDF5_H5T_VARIABLE(void) { return H5T_VARIABLE; }

#endif
