/* kcache.c: the on-disk kernel cache (kcache.h). A file is a 64-byte header
 * followed by the blob; the header names what the file holds so that a file
 * renamed, truncated or written by another format version is refused. */
#include "codegen/kcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define KC_MAGIC "DBRK"
#define KC_VERSION 1u
#define KC_KIND_MAX 32
#define KC_HEADER 64

static _Atomic int64_t g_rejected;
static _Thread_local bool t_last_rejected;

bool dbr_kcache_last_rejected(void) { return t_last_rejected; }
int64_t dbr_kcache_rejected(void) { return atomic_load(&g_rejected); }

static int mkdir_p(const char *dir) {
    char p[4096];
    const size_t len = strlen(dir);
    if (len == 0 || len >= sizeof p) return -1;
    memcpy(p, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        const char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
        p[i] = c;
    }
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

const char *dbr_kcache_dir(void) {
    static _Thread_local char buf[4096];
    const char *env = getenv("DBR_CACHE_DIR");
    int w;
    if (env) {
        if (!env[0] || !strcmp(env, "off")) return NULL;
        w = snprintf(buf, sizeof buf, "%s", env);
    } else if ((env = getenv("XDG_CACHE_HOME")) && env[0]) {
        w = snprintf(buf, sizeof buf, "%s/dbr", env);
    } else if ((env = getenv("HOME")) && env[0]) {
        w = snprintf(buf, sizeof buf, "%s/.cache/dbr", env);
    } else {
        return NULL;
    }
    if (w < 0 || (size_t)w >= sizeof buf || mkdir_p(buf) != 0) return NULL;
    return buf;
}

static bool kind_ok(const char *kind) {
    const size_t n = strlen(kind);
    if (n == 0 || n >= KC_KIND_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        const char c = kind[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

int dbr_kcache_path(const char *kind, uint64_t key, char *buf, size_t n) {
    const char *dir = dbr_kcache_dir();
    if (!dir || !kind_ok(kind)) return -1;
    const int w = snprintf(buf, n, "%s/%s-%016llx.bin", dir, kind, (unsigned long long)key);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

static uint32_t crc_of(const void *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const unsigned char *b = p;
    while (n > 0) {
        const uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* magic[4] version[4] kind[32] key[8] size[8] crc[4] zero[4] */
static void header_make(unsigned char h[KC_HEADER], const char *kind, uint64_t key, size_t n,
                        uint32_t crc) {
    memset(h, 0, KC_HEADER);
    memcpy(h, KC_MAGIC, 4);
    put_u32(h + 4, KC_VERSION);
    memcpy(h + 8, kind, strlen(kind));
    put_u64(h + 40, key);
    put_u64(h + 48, (uint64_t)n);
    put_u32(h + 56, crc);
}

static int reject(const char *path, FILE *f, void *blob) {
    if (f) fclose(f);
    free(blob);
    unlink(path);
    atomic_fetch_add(&g_rejected, 1);
    t_last_rejected = true;
    return 1;
}

int dbr_kcache_load(const char *kind, uint64_t key, void **blob, size_t *n) {
    char path[4200];
    t_last_rejected = false;
    *blob = NULL;
    *n = 0;
    if (dbr_kcache_path(kind, key, path, sizeof path) != 0) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 1 : -1;
    unsigned char h[KC_HEADER], want[KC_HEADER];
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return -1;
    }
    if (fread(h, 1, KC_HEADER, f) != KC_HEADER) return reject(path, f, NULL);
    const uint64_t size = get_u64(h + 48);
    header_make(want, kind, key, (size_t)size, get_u32(h + 56));
    if (memcmp(h, want, KC_HEADER) != 0 || st.st_size < KC_HEADER ||
        (uint64_t)st.st_size - KC_HEADER != size)
        return reject(path, f, NULL);
    void *b = malloc(size ? (size_t)size : 1);
    if (!b) {
        fclose(f);
        return -1;
    }
    if (fread(b, 1, (size_t)size, f) != (size_t)size || crc_of(b, (size_t)size) != get_u32(h + 56))
        return reject(path, f, b);
    fclose(f);
    *blob = b;
    *n = (size_t)size;
    return 0;
}

int dbr_kcache_store(const char *kind, uint64_t key, const void *blob, size_t n) {
    char path[4200], tmp[4300];
    if (dbr_kcache_path(kind, key, path, sizeof path) != 0) return -1;
    const int w = snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", path);
    if (w < 0 || (size_t)w >= sizeof tmp) return -1;
    const int fd = mkstemp(tmp);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    unsigned char h[KC_HEADER];
    header_make(h, kind, key, n, crc_of(blob, n));
    bool ok = fwrite(h, 1, KC_HEADER, f) == KC_HEADER && fwrite(blob, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (ok) ok = chmod(tmp, 0644) == 0 && rename(tmp, path) == 0;
    if (!ok) {
        unlink(tmp);
        return -1;
    }
    return 0;
}
