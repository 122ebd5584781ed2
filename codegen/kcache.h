/* kcache.h: compiled kernels on disk, one file per (kind, key): an object
 * file for the CPU JIT, a cubin for a GPU. Files carry a header (magic,
 * format version, kind, key, size, crc32) and anything that does not match
 * is deleted and treated as a miss. Writes go to a temp file and a rename,
 * so readers never see half a file. */
#ifndef DBR_CODEGEN_KCACHE_H
#define DBR_CODEGEN_KCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Directory: $DBR_CACHE_DIR, else $XDG_CACHE_HOME/dbr, else
 * $HOME/.cache/dbr; DBR_CACHE_DIR=off (or empty) disables the disk cache
 * (NULL). Created on demand (mkdir -p). Read from the environment on every
 * call; the string lives until the next call on the same thread. */
const char *dbr_kcache_dir(void);

/* 0 and a malloc'd *blob on a hit; 1 on a miss, including a corrupt,
 * truncated or foreign file (which is deleted and counted as rejected); -1
 * on other errors (and when the cache is disabled). kind is a short tag
 * like "cpu" or "cubin-sm90" ([A-Za-z0-9_-], at most 31 characters). */
int dbr_kcache_load(const char *kind, uint64_t key, void **blob, size_t *n);

/* Writes to a temp file in the same dir then renames; 0 or -1 (never
 * leaves a partial file). */
int dbr_kcache_store(const char *kind, uint64_t key, const void *blob, size_t n);

/* The file that holds (kind, key), whether or not it exists: 0, or -1 when
 * the cache is disabled or the name does not fit. */
int dbr_kcache_path(const char *kind, uint64_t key, char *buf, size_t n);

/* Whether the calling thread's last dbr_kcache_load rejected a file. */
bool dbr_kcache_last_rejected(void);

/* Files rejected by this process so far (all kinds, all threads). */
int64_t dbr_kcache_rejected(void);

#endif
