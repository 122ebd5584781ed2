/* npz.c: dbr_save and dbr_load. Parameters and buffers travel as a NumPy
 * .npz file: a ZIP archive (stored or raw-deflate members, zip64 records
 * where sizes need them) holding one .npy member per tensor. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* fseeko, fsync, O_DIRECTORY; CMake defines it too */
#endif
#include "frontend/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

/* Sizes and offsets at or above this go into zip64 fields. Overridable so a
 * build can exercise the zip64 path on small files. */
#ifndef DBR_ZIP64_LIMIT
#define DBR_ZIP64_LIMIT 0xFFFFFFFFull
#endif

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define DOS_DATE_1980 0x21u    /* 1980-01-01: fixed, so equal models give equal files */
#define NPY_ALIGN 64
#define NPY_MAX_PREAMBLE (1u << 20)
#define CHUNK (1u << 20)

/* ---- little-endian fields --------------------------------------------- */
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xFFFF); put16(p + 2, v >> 16); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }
static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t get32(const uint8_t *p) { return get16(p) | get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static const char *npy_descr(int32_t dt) {
    switch (dt) {
    case DBR_F32: return "<f4";
    case DBR_F64: return "<f8";
    case DBR_I32: return "<i4";
    case DBR_I64: return "<i8";
    default: return NULL;
    }
}

static int npy_dtype(const char *descr) {
    for (int dt = 0; dt < DBR_NDTYPES; dt++) {
        const char *d = npy_descr(dt);
        if (d && strcmp(d, descr) == 0) return dt;
    }
    return -1;
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, uint64_t n) {
    while (n > 0) {
        uInt k = n > CHUNK ? CHUNK : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

/* "[512,784]" */
static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* The .npy v1.0 preamble: magic, version, header length, a Python dict
 * literal padded with spaces and a newline to a multiple of 64 bytes. */
static size_t npy_preamble(uint8_t *buf, size_t cap, const dbr_tensor *t) {
    char shape[DBR_MAX_DIMS * 24 + 8];
    size_t o = 0;
    shape[o++] = '(';
    for (int i = 0; i < t->ndim; i++)
        o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", i ? ", " : "",
                              (long long)t->shape[i]);
    if (t->ndim == 1) shape[o++] = ',';
    shape[o++] = ')';
    shape[o] = 0;
    char *dict = (char *)buf + 10;
    int n = snprintf(dict, cap - 10, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     npy_descr(t->dtype), shape);
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    if (padded > cap) return 0;
    memset(dict + n, ' ', padded - total);
    buf[padded - 1] = '\n';
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    put16(buf + 8, (uint32_t)(padded - 10));
    return padded;
}

/* ---- saving ------------------------------------------------------------ */
typedef struct zentry {
    const dbr_tensor *t;
    uint64_t off, csize, usize;
    uint32_t crc;
    uint16_t method;
} zentry;

typedef struct zsave {
    dbr_ctx *ctx;
    const char *file;
    int line;
    const char *tmp;   /* the temporary path being written */
    FILE *f;
    uint8_t *out;      /* deflate output, CHUNK bytes */
} zsave;

static int save_io_error(zsave *s) {
    dbr_set_error(s->ctx, s->file, s->line, "dbr_save", "error writing '%s': %s", s->tmp,
                  strerror(errno ? errno : EIO));
    return -1;
}

static int save_write(zsave *s, const void *p, size_t n) {
    errno = 0;
    if (n && fwrite(p, 1, n, s->f) != n) return save_io_error(s);
    return 0;
}

static size_t member_name(char *buf, size_t cap, const dbr_tensor *t) {
    return (size_t)snprintf(buf, cap, "%s.npy", t->name);
}

static uint16_t name_flags(const char *name) {
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p >= 0x80) return 0x800;   /* UTF-8 name */
    return 0;
}

static int write_local_header(zsave *s, const zentry *e, const char *name, size_t nlen,
                              bool zip64) {
    uint8_t h[30 + 20];
    put32(h, SIG_LOCAL);
    put16(h + 4, zip64 ? 45 : 20);
    put16(h + 6, name_flags(name));
    put16(h + 8, e->method);
    put16(h + 10, 0);
    put16(h + 12, DOS_DATE_1980);
    put32(h + 14, e->crc);
    put32(h + 18, zip64 ? 0xFFFFFFFFu : (uint32_t)e->csize);
    put32(h + 22, zip64 ? 0xFFFFFFFFu : (uint32_t)e->usize);
    put16(h + 26, (uint32_t)nlen);
    put16(h + 28, zip64 ? 20 : 0);
    if (zip64) {
        put16(h + 30, 1);
        put16(h + 32, 16);
        put64(h + 34, e->usize);
        put64(h + 42, e->csize);
    }
    if (save_write(s, h, 30) || save_write(s, name, nlen)) return -1;
    return zip64 ? save_write(s, h + 30, 20) : 0;
}

/* Feed n bytes to deflate (flush Z_FINISH ends the stream), writing out. */
static int deflate_feed(zsave *s, z_stream *zs, const uint8_t *p, uint64_t n, int flush) {
    do {
        uInt k = n > CHUNK ? CHUNK : (uInt)n;
        zs->next_in = (Bytef *)(uintptr_t)p;
        zs->avail_in = k;
        p += k;
        n -= k;
        int fl = n == 0 ? flush : Z_NO_FLUSH;
        int rc;
        do {
            zs->next_out = s->out;
            zs->avail_out = CHUNK;
            rc = deflate(zs, fl);
            if (rc == Z_STREAM_ERROR) {
                dbr_set_error(s->ctx, s->file, s->line, "dbr_save", "zlib deflate failed for '%s'",
                              s->tmp);
                return -1;
            }
            if (save_write(s, s->out, CHUNK - zs->avail_out)) return -1;
        } while (zs->avail_out == 0 || (fl == Z_FINISH && rc != Z_STREAM_END));
    } while (n > 0);
    return 0;
}

static int write_member(zsave *s, zentry *e, bool compress) {
    const dbr_tensor *t = e->t;
    char name[4096];
    size_t nlen = member_name(name, sizeof name, t);
    uint8_t pre[1024];
    size_t plen = npy_preamble(pre, sizeof pre, t);
    off_t off = ftello(s->f);
    if (off < 0) return save_io_error(s);
    e->off = (uint64_t)off;
    e->usize = plen + (uint64_t)t->nbytes;
    e->method = compress ? 8 : 0;
    e->crc = crc_update(crc_update(0, pre, plen), t->data, (uint64_t)t->nbytes);
    /* Deflate may grow incompressible data a little: leave room. */
    bool zip64 = e->usize + (e->usize >> 8) + 4096 >= DBR_ZIP64_LIMIT;
    if (write_local_header(s, e, name, nlen, zip64)) return -1;
    off_t start = ftello(s->f);
    if (start < 0) return save_io_error(s);
    if (!compress) {
        if (save_write(s, pre, plen) || save_write(s, t->data, (size_t)t->nbytes)) return -1;
    } else {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) !=
            Z_OK) {
            dbr_set_error(s->ctx, s->file, s->line, "dbr_save", "zlib deflateInit2 failed");
            return -1;
        }
        int rc = deflate_feed(s, &zs, pre, plen, Z_NO_FLUSH);
        if (!rc) rc = deflate_feed(s, &zs, t->data, (uint64_t)t->nbytes, Z_FINISH);
        deflateEnd(&zs);
        if (rc) return -1;
    }
    off_t end = ftello(s->f);
    if (end < 0) return save_io_error(s);
    e->csize = (uint64_t)(end - start);
    if (!zip64 && e->csize >= DBR_ZIP64_LIMIT) {
        dbr_set_error(s->ctx, s->file, s->line, "dbr_save",
                      "'%s': deflate grew member '%s' past the zip32 limit", s->tmp, name);
        return -1;
    }
    /* Now that the sizes and CRC are known, rewrite the local header. */
    if (fseeko(s->f, off, SEEK_SET) || write_local_header(s, e, name, nlen, zip64) ||
        fseeko(s->f, end, SEEK_SET))
        return save_io_error(s);
    return 0;
}

static int write_central(zsave *s, const zentry *e) {
    char name[4096];
    size_t nlen = member_name(name, sizeof name, e->t);
    bool big_u = e->usize >= DBR_ZIP64_LIMIT, big_c = e->csize >= DBR_ZIP64_LIMIT,
         big_o = e->off >= DBR_ZIP64_LIMIT;
    uint8_t h[46], x[28];
    size_t xl = 0;
    if (big_u || big_c || big_o) {
        xl = 4;
        if (big_u) put64(x + xl, e->usize), xl += 8;
        if (big_c) put64(x + xl, e->csize), xl += 8;
        if (big_o) put64(x + xl, e->off), xl += 8;
        put16(x, 1);
        put16(x + 2, (uint32_t)(xl - 4));
    }
    uint32_t ver = xl ? 45 : 20;
    put32(h, SIG_CENTRAL);
    put16(h + 4, ver | 3u << 8);   /* made by: Unix */
    put16(h + 6, ver);
    put16(h + 8, name_flags(name));
    put16(h + 10, e->method);
    put16(h + 12, 0);
    put16(h + 14, DOS_DATE_1980);
    put32(h + 16, e->crc);
    put32(h + 20, big_c ? 0xFFFFFFFFu : (uint32_t)e->csize);
    put32(h + 24, big_u ? 0xFFFFFFFFu : (uint32_t)e->usize);
    put16(h + 28, (uint32_t)nlen);
    put16(h + 30, (uint32_t)xl);
    put16(h + 32, 0);
    put16(h + 34, 0);
    put16(h + 36, 0);
    put32(h + 38, 0100644u << 16);   /* regular file, rw-r--r-- */
    put32(h + 42, big_o ? 0xFFFFFFFFu : (uint32_t)e->off);
    if (save_write(s, h, 46) || save_write(s, name, nlen)) return -1;
    return save_write(s, x, xl);
}

static int write_end(zsave *s, uint64_t n, uint64_t cd_off, uint64_t cd_size) {
    bool z64 = n >= 0xFFFF || cd_off >= DBR_ZIP64_LIMIT || cd_size >= DBR_ZIP64_LIMIT;
    uint8_t h[56];
    if (z64) {
        uint64_t at = cd_off + cd_size;
        put32(h, SIG_EOCD64);
        put64(h + 4, 44);
        put16(h + 12, 45 | 3u << 8);
        put16(h + 14, 45);
        put32(h + 16, 0);
        put32(h + 20, 0);
        put64(h + 24, n);
        put64(h + 32, n);
        put64(h + 40, cd_size);
        put64(h + 48, cd_off);
        if (save_write(s, h, 56)) return -1;
        put32(h, SIG_LOC64);
        put32(h + 4, 0);
        put64(h + 8, at);
        put32(h + 16, 1);
        if (save_write(s, h, 20)) return -1;
    }
    put32(h, SIG_EOCD);
    put16(h + 4, 0);
    put16(h + 6, 0);
    put16(h + 8, z64 && n >= 0xFFFF ? 0xFFFF : (uint32_t)n);
    put16(h + 10, z64 && n >= 0xFFFF ? 0xFFFF : (uint32_t)n);
    put32(h + 12, cd_size >= DBR_ZIP64_LIMIT ? 0xFFFFFFFFu : (uint32_t)cd_size);
    put32(h + 16, cd_off >= DBR_ZIP64_LIMIT ? 0xFFFFFFFFu : (uint32_t)cd_off);
    put16(h + 20, 0);
    return save_write(s, h, 22);
}

/* Every tensor must be saveable before the file is created. */
static int save_check(dbr_ctx *ctx, const char *file, int line, int64_t *count) {
    int64_t n = 0;
    for (dbr_tensor *t = ctx->params; t; t = t->next, n++) {
        const char *what = t->kind == DBR_KIND_BUFFER ? "buffer" : "parameter";
        if (!t->name || !*t->name || strlen(t->name) > 4000) {
            dbr_set_error(ctx, file, line, "dbr_save", "%s #%lld has no usable name", what,
                          (long long)n);
            return -1;
        }
        if (!npy_descr(t->dtype)) {
            dbr_set_error(ctx, file, line, "dbr_save", "%s %s: dtype %s cannot be saved", what,
                          t->name, dbr_dtype_name(t->dtype));
            return -1;
        }
        if (!t->data && t->nbytes > 0) {
            dbr_set_error(ctx, file, line, "dbr_save",
                          "%s %s has no data (meta mode holds shapes only)", what, t->name);
            return -1;
        }
    }
    *count = n;
    return 0;
}

static void sync_parent_dir(const char *path) {
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash) {
        slash[slash == dir ? 1 : 0] = 0;
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);   /* best effort: the rename itself has succeeded */
        close(fd);
    }
    free(dir);
}

int dbr_save_(dbr_ctx *ctx, const char *path, bool compress, const char *file, int line) {
    if (!ctx) return -1;
    if (!path || !*path) {
        dbr_set_error(ctx, file, line, "dbr_save", "empty path");
        return -1;
    }
    int64_t n;
    if (save_check(ctx, file, line, &n)) return -1;
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    zentry *ents = calloc((size_t)(n ? n : 1), sizeof *ents);
    zsave s = {ctx, file, line, tmp, NULL, malloc(CHUNK)};
    if (!tmp || !ents || !s.out) {
        dbr_set_error(ctx, file, line, "dbr_save", "out of memory saving '%s'", path);
        free(tmp), free(ents), free(s.out);
        return -1;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    s.f = fopen(tmp, "wb");
    if (!s.f) {
        dbr_set_error(ctx, file, line, "dbr_save", "cannot create '%s': %s", tmp, strerror(errno));
        free(tmp), free(ents), free(s.out);
        return -1;
    }
    int rc = 0;
    int64_t i = 0;
    for (dbr_tensor *t = ctx->params; t && !rc; t = t->next, i++) {
        ents[i].t = t;
        rc = write_member(&s, &ents[i], compress);
    }
    off_t cd_off = rc ? 0 : ftello(s.f);
    if (!rc && cd_off < 0) rc = save_io_error(&s);
    for (i = 0; i < n && !rc; i++) rc = write_central(&s, &ents[i]);
    off_t cd_end = rc ? 0 : ftello(s.f);
    if (!rc && cd_end < 0) rc = save_io_error(&s);
    if (!rc) rc = write_end(&s, (uint64_t)n, (uint64_t)cd_off, (uint64_t)(cd_end - cd_off));
    errno = 0;
    if (!rc && (fflush(s.f) || fsync(fileno(s.f)))) rc = save_io_error(&s);
    errno = 0;
    if (fclose(s.f) && !rc) rc = save_io_error(&s);
    if (!rc && rename(tmp, path)) {
        dbr_set_error(ctx, file, line, "dbr_save", "cannot rename '%s' to '%s': %s", tmp, path,
                      strerror(errno));
        rc = -1;
    }
    if (rc)
        remove(tmp);
    else
        sync_parent_dir(path);
    free(tmp), free(ents), free(s.out);
    return rc;
}

/* ---- loading ----------------------------------------------------------- */
typedef struct npz_member {
    char *name;                /* array name: the member name less ".npy" */
    uint16_t method;
    uint32_t crc;
    uint64_t csize, usize;
    const uint8_t *cdata;      /* the member's (compressed) bytes in the file image */
    uint64_t pre;              /* .npy preamble bytes before the array data */
    int32_t dtype;
    int ndim;
    int64_t shape[DBR_MAX_DIMS];
    int64_t nbytes;
    dbr_tensor *t;             /* the existing parameter or buffer, or NULL */
} npz_member;

typedef struct npz_load {
    dbr_ctx *ctx;
    const char *file;
    int line;
    const char *path;
    uint8_t *buf;              /* the whole file */
    uint64_t size;
    npz_member *m;
    uint64_t n;
} npz_load;

#define LOAD_ERR(L, ...) (dbr_set_error((L)->ctx, (L)->file, (L)->line, "dbr_load", __VA_ARGS__), -1)

static int bad_zip(npz_load *L, const char *why) {
    return LOAD_ERR(L, "'%s' is not a valid .npz file (%s)", L->path, why);
}

static int read_whole(npz_load *L) {
    FILE *f = fopen(L->path, "rb");
    if (!f) return LOAD_ERR(L, "cannot open '%s': %s", L->path, strerror(errno));
    off_t size = -1;
    if (fseeko(f, 0, SEEK_END) == 0) size = ftello(f);
    if (size < 0 || fseeko(f, 0, SEEK_SET)) {
        int e = errno;
        fclose(f);
        return LOAD_ERR(L, "cannot read '%s': %s", L->path, strerror(e));
    }
    L->size = (uint64_t)size;
    L->buf = malloc(L->size ? L->size : 1);
    if (!L->buf) {
        fclose(f);
        return LOAD_ERR(L, "out of memory reading '%s' (%llu bytes)", L->path,
                        (unsigned long long)L->size);
    }
    errno = 0;
    size_t got = fread(L->buf, 1, L->size, f);
    int e = errno;
    fclose(f);
    if (got != L->size)
        return LOAD_ERR(L, "cannot read '%s': %s", L->path, e ? strerror(e) : "file shrank");
    return 0;
}

/* Locate the central directory through the (zip64) end record. */
static int find_central(npz_load *L, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count) {
    const uint8_t *b = L->buf;
    if (L->size < 22) return bad_zip(L, "bad end-of-central-directory record");
    uint64_t lo = L->size >= 22 + 0xFFFF ? L->size - 22 - 0xFFFF : 0;
    uint64_t at = L->size - 22;
    for (;; at--) {
        if (get32(b + at) == SIG_EOCD && at + 22 + get16(b + at + 20) == L->size) break;
        if (at == lo) return bad_zip(L, "bad end-of-central-directory record");
    }
    if (get16(b + at + 4) != 0 || get16(b + at + 6) != 0)
        return LOAD_ERR(L, "'%s': multi-disk ZIP archives are not supported", L->path);
    *count = get16(b + at + 10);
    *cd_size = get32(b + at + 12);
    *cd_off = get32(b + at + 16);
    bool maybe64 = *count == 0xFFFF || *cd_size == 0xFFFFFFFFu || *cd_off == 0xFFFFFFFFu;
    if (maybe64 && at >= 20 && get32(b + at - 20) == SIG_LOC64) {
        uint64_t e64 = get64(b + at - 20 + 8);
        if (e64 > at - 20 || at - 20 - e64 < 56 || get32(b + e64) != SIG_EOCD64)
            return bad_zip(L, "bad zip64 end-of-central-directory record");
        *count = get64(b + e64 + 32);
        *cd_size = get64(b + e64 + 40);
        *cd_off = get64(b + e64 + 48);
        at = e64;
    }
    if (*cd_off > at || *cd_size > at - *cd_off)
        return bad_zip(L, "central directory out of bounds");
    if (*count > *cd_size / 46) return bad_zip(L, "bad central directory entry count");
    return 0;
}

/* Sizes and offset that read 0xFFFFFFFF come from the zip64 extra field. */
static int zip64_extra(npz_load *L, const uint8_t *x, uint32_t xl, uint64_t *usize,
                       uint64_t *csize, uint64_t *loff, const char *name) {
    bool nu = *usize == 0xFFFFFFFFu, nc = *csize == 0xFFFFFFFFu, no = *loff == 0xFFFFFFFFu;
    if (!nu && !nc && !no) return 0;
    for (uint32_t p = 0; p + 4 <= xl;) {
        uint32_t id = get16(x + p), len = get16(x + p + 2);
        if (p + 4 + len > xl) break;
        if (id == 1) {
            const uint8_t *q = x + p + 4;
            uint32_t need = 8u * (nu + nc + no);
            if (len < need) break;
            if (nu) *usize = get64(q), q += 8;
            if (nc) *csize = get64(q), q += 8;
            if (no) *loff = get64(q);
            return 0;
        }
        p += 4 + len;
    }
    return LOAD_ERR(L, "'%s' is not a valid .npz file (bad zip64 extra field for '%s')", L->path,
                    name);
}

/* Read one central directory entry at *pos into m; advances *pos. */
static int parse_entry(npz_load *L, uint64_t *pos, uint64_t cd_end, npz_member *m, uint64_t idx) {
    const uint8_t *b = L->buf;
    uint64_t p = *pos;
    char why[96];
    if (cd_end - p < 46 || get32(b + p) != SIG_CENTRAL) {
        snprintf(why, sizeof why, "bad central directory entry %llu", (unsigned long long)idx);
        return bad_zip(L, why);
    }
    uint32_t flags = get16(b + p + 8), nlen = get16(b + p + 28), xl = get16(b + p + 30),
             cl = get16(b + p + 32);
    if (cd_end - p - 46 < (uint64_t)nlen + xl + cl) {
        snprintf(why, sizeof why, "bad central directory entry %llu", (unsigned long long)idx);
        return bad_zip(L, why);
    }
    char *zname = malloc(nlen + 1);
    if (!zname) return LOAD_ERR(L, "out of memory reading '%s'", L->path);
    memcpy(zname, b + p + 46, nlen);
    zname[nlen] = 0;
    m->name = zname;
    m->method = (uint16_t)get16(b + p + 10);
    m->crc = get32(b + p + 16);
    m->csize = get32(b + p + 20);
    m->usize = get32(b + p + 24);
    uint64_t loff = get32(b + p + 42);
    *pos = p + 46 + nlen + xl + cl;
    if (memchr(zname, 0, nlen) || nlen < 5 || strcmp(zname + nlen - 4, ".npy") != 0)
        return LOAD_ERR(L, "'%s': member '%s' is not a .npy array", L->path, zname);
    if (flags & 1) return LOAD_ERR(L, "'%s': member '%s' is encrypted", L->path, zname);
    if (m->method != 0 && m->method != 8)
        return LOAD_ERR(L,
                        "'%s': member '%s' uses compression method %u (only stored and deflate "
                        "are supported)",
                        L->path, zname, m->method);
    if (zip64_extra(L, b + p + 46 + nlen, xl, &m->usize, &m->csize, &loff, zname)) return -1;
    if (loff > L->size || L->size - loff < 30 || get32(b + loff) != SIG_LOCAL) {
        snprintf(why, sizeof why, "bad local header for member %llu", (unsigned long long)idx);
        return bad_zip(L, why);
    }
    uint64_t data = loff + 30 + get16(b + loff + 26) + get16(b + loff + 28);
    if (data > L->size || m->csize > L->size - data) {
        snprintf(why, sizeof why, "member %llu runs past the end of the file",
                 (unsigned long long)idx);
        return bad_zip(L, why);
    }
    if (m->method == 0 && m->csize != m->usize) {
        snprintf(why, sizeof why, "stored member %llu has differing sizes",
                 (unsigned long long)idx);
        return bad_zip(L, why);
    }
    m->cdata = b + data;
    zname[nlen - 4] = 0;   /* the array name */
    return 0;
}

/* Inflate the first `want` bytes of member m into out (fewer if the
 * member holds fewer); returns the count, or -1 with zlib's reason in why. */
static int64_t inflate_prefix(const npz_member *m, uint8_t *out, uint64_t want, char *why,
                              size_t wcap) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK) return snprintf(why, wcap, "inflateInit2 failed"), -1;
    zs.next_in = (Bytef *)(uintptr_t)m->cdata;
    /* want <= CHUNK, and deflate never grows data by half */
    zs.avail_in = m->csize > 2 * CHUNK ? 2 * CHUNK : (uInt)m->csize;
    zs.next_out = out;
    zs.avail_out = (uInt)want;
    int rc = Z_OK;
    while (zs.avail_out > 0 && rc == Z_OK) rc = inflate(&zs, Z_NO_FLUSH);
    int64_t got = (int64_t)(want - zs.avail_out);
    if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && got > 0)) {
        snprintf(why, wcap, "%s", zs.msg ? zs.msg : "unexpected end of deflate data");
        got = -1;
    }
    inflateEnd(&zs);
    return got;
}

/* ---- the .npy header dict: a small Python literal -------------------- */
typedef struct lit {
    const char *p, *end;
} lit;

static void lit_ws(lit *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool lit_eat(lit *c, char ch) {
    lit_ws(c);
    if (c->p < c->end && *c->p == ch) return c->p++, true;
    return false;
}

static bool lit_str(lit *c, char *out, size_t cap) {
    lit_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return false;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (n + 1 >= cap) return false;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return false;
    c->p++;
    out[n] = 0;
    return true;
}

static bool lit_word(lit *c, const char *w) {
    lit_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) return c->p += n, true;
    return false;
}

/* Parse the dict into m; on failure writes the reason into why. */
static bool parse_npy_dict(const char *s, size_t len, npz_member *m, char *descr, size_t dcap,
                           bool *fortran, char *why, size_t wcap) {
    lit c = {s, s + len};
    bool have_d = false, have_f = false, have_s = false;
    if (!lit_eat(&c, '{')) return snprintf(why, wcap, "header is not a dict"), false;
    while (!lit_eat(&c, '}')) {
        char key[32];
        if (!lit_str(&c, key, sizeof key) || !lit_eat(&c, ':'))
            return snprintf(why, wcap, "malformed header"), false;
        if (strcmp(key, "descr") == 0) {
            if (!lit_str(&c, descr, dcap))
                return snprintf(why, wcap, "structured dtypes are not supported"), false;
            have_d = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (lit_word(&c, "True"))
                *fortran = true;
            else if (lit_word(&c, "False"))
                *fortran = false;
            else
                return snprintf(why, wcap, "malformed fortran_order"), false;
            have_f = true;
        } else if (strcmp(key, "shape") == 0) {
            if (!lit_eat(&c, '(')) return snprintf(why, wcap, "malformed shape"), false;
            m->ndim = 0;
            while (!lit_eat(&c, ')')) {
                lit_ws(&c);
                int64_t v = 0;
                const char *d0 = c.p;
                while (c.p < c.end && *c.p >= '0' && *c.p <= '9') {
                    if (v > (INT64_MAX - 9) / 10)
                        return snprintf(why, wcap, "shape overflows"), false;
                    v = v * 10 + (*c.p++ - '0');
                }
                if (c.p == d0) return snprintf(why, wcap, "malformed shape"), false;
                if (c.p < c.end && *c.p == 'L') c.p++;   /* Python 2 long */
                if (m->ndim == DBR_MAX_DIMS)
                    return snprintf(why, wcap, "more than %d dims", DBR_MAX_DIMS), false;
                m->shape[m->ndim++] = v;
                if (!lit_eat(&c, ',')) {
                    if (!lit_eat(&c, ')')) return snprintf(why, wcap, "malformed shape"), false;
                    break;
                }
            }
            have_s = true;
        } else {
            return snprintf(why, wcap, "unexpected key '%s' in header", key), false;
        }
        if (!lit_eat(&c, ',')) {
            if (!lit_eat(&c, '}')) return snprintf(why, wcap, "malformed header"), false;
            break;
        }
    }
    if (!have_d || !have_f || !have_s)
        return snprintf(why, wcap, "header lacks descr, fortran_order or shape"), false;
    return true;
}

/* The first `want` bytes of member m (want <= 12 or <= NPY_MAX_PREAMBLE),
 * inflated into buf when compressed; NULL after reporting a short or corrupt
 * member. */
static const uint8_t *member_prefix(npz_load *L, const npz_member *m, uint8_t *buf,
                                    uint64_t want) {
    char why[128] = "ends inside the .npy header";
    if (m->usize >= want && m->method == 0) return m->cdata;
    if (m->usize >= want && inflate_prefix(m, buf, want, why, sizeof why) == (int64_t)want)
        return buf;
    (void)LOAD_ERR(L, "'%s': member '%s.npy': corrupt data (%s)", L->path, m->name, why);
    return NULL;
}

static int check_descr(npz_load *L, npz_member *m, const char *descr) {
    m->dtype = npy_dtype(descr);
    if (m->dtype >= 0) return 0;
    char le[32];
    snprintf(le, sizeof le, "<%s", descr + 1);
    if (descr[0] == '>' && npy_dtype(le) >= 0)
        return LOAD_ERR(L, "'%s': array %s: big-endian data ('%s') is not supported", L->path,
                        m->name, descr);
    return LOAD_ERR(L, "'%s': array %s: unsupported dtype '%s' (dbr reads <f4, <f8, <i4, <i8)",
                    L->path, m->name, descr);
}

/* Read member m's .npy preamble: dtype, shape, data size. */
static int parse_npy(npz_load *L, npz_member *m) {
    uint8_t head[12];
    const uint8_t *pre = member_prefix(L, m, head, 10);
    if (!pre) return -1;
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return LOAD_ERR(L, "'%s': member '%s.npy' is not a .npy array (bad magic)", L->path,
                        m->name);
    int major = pre[6], minor = pre[7];
    uint64_t hstart, hlen;
    if (major == 1) {
        hstart = 10, hlen = get16(pre + 8);
    } else if (major == 2 || major == 3) {
        if (!(pre = member_prefix(L, m, head, 12))) return -1;
        hstart = 12, hlen = get32(pre + 8);
    } else {
        return LOAD_ERR(L, "'%s': member '%s.npy': unsupported .npy version %d.%d", L->path,
                        m->name, major, minor);
    }
    m->pre = hstart + hlen;
    if (m->pre > NPY_MAX_PREAMBLE)
        return LOAD_ERR(L, "'%s': member '%s.npy': header of %llu bytes is too long", L->path,
                        m->name, (unsigned long long)hlen);
    uint8_t *tmp = malloc(m->pre);
    if (!tmp) return LOAD_ERR(L, "out of memory reading '%s'", L->path);
    if (!(pre = member_prefix(L, m, tmp, m->pre))) {
        free(tmp);
        return -1;
    }
    char descr[32], why[96];
    bool fortran = false;
    bool ok = parse_npy_dict((const char *)pre + hstart, hlen, m, descr, sizeof descr, &fortran,
                             why, sizeof why);
    free(tmp);
    if (!ok) return LOAD_ERR(L, "'%s': member '%s.npy': %s", L->path, m->name, why);
    if (check_descr(L, m, descr)) return -1;
    int multi = 0;
    for (int i = 0; i < m->ndim; i++) multi += m->shape[i] > 1;
    if (fortran && multi > 1)   /* with at most one dim > 1 both orders agree */
        return LOAD_ERR(L, "'%s': array %s: fortran_order (column-major) arrays are not supported",
                        L->path, m->name);
    uint64_t numel = 1, isz = dbr_dtype_size(m->dtype);
    for (int i = 0; i < m->ndim; i++) {
        if (m->shape[i] && numel > (uint64_t)INT64_MAX / isz / (uint64_t)m->shape[i])
            return LOAD_ERR(L, "'%s': array %s: shape overflows", L->path, m->name);
        numel *= (uint64_t)m->shape[i];
    }
    m->nbytes = (int64_t)(numel * isz);
    if (m->usize - m->pre != (uint64_t)m->nbytes) {
        char sh[DBR_MAX_DIMS * 24 + 4];
        shape_str(sh, sizeof sh, m->ndim, m->shape);
        return LOAD_ERR(L, "'%s': array %s: %llu bytes of data, expected %lld for %s %s", L->path,
                        m->name, (unsigned long long)(m->usize - m->pre), (long long)m->nbytes,
                        dbr_dtype_name(m->dtype), sh);
    }
    return 0;
}

/* The file's array must match an existing parameter or buffer. */
static int check_member(npz_load *L, npz_member *m) {
    for (uint64_t j = 0; j < L->n && &L->m[j] != m; j++)
        if (strcmp(L->m[j].name, m->name) == 0)
            return LOAD_ERR(L, "'%s': array %s appears twice", L->path, m->name);
    dbr_tensor *t = L->ctx->params;
    while (t && (!t->name || strcmp(t->name, m->name) != 0)) t = t->next;
    m->t = t;
    if (!t) return 0;
    const char *what = t->kind == DBR_KIND_BUFFER ? "buffer" : "parameter";
    bool same = t->ndim == m->ndim;
    for (int i = 0; same && i < m->ndim; i++) same = t->shape[i] == m->shape[i];
    if (!same) {
        char a[DBR_MAX_DIMS * 24 + 4], b[DBR_MAX_DIMS * 24 + 4];
        shape_str(a, sizeof a, m->ndim, m->shape);
        shape_str(b, sizeof b, t->ndim, t->shape);
        return LOAD_ERR(L, "'%s': %s %s: shape %s in file, %s in model", L->path, what, m->name, a,
                        b);
    }
    if ((int32_t)t->dtype != m->dtype)
        return LOAD_ERR(L, "'%s': %s %s: dtype %s in file, %s in model", L->path, what, m->name,
                        dbr_dtype_name(m->dtype), dbr_dtype_name(t->dtype));
    return 0;
}

/* Where inflate's next output goes: the preamble and anything past the
 * expected size to scratch, the array data straight to dst. */
static uint8_t *inflate_target(const npz_member *m, uint8_t *dst, uint8_t *scratch, uint64_t got,
                               uInt *room) {
    *room = CHUNK;
    if (!dst || got >= m->usize) return scratch;
    if (got < m->pre) {
        if (m->pre - got < CHUNK) *room = (uInt)(m->pre - got);
        return scratch;
    }
    if (m->usize - got < CHUNK) *room = (uInt)(m->usize - got);
    return dst + (got - m->pre);
}

/* Walk member m (inflating it when compressed), checking its size and
 * CRC-32; with dst, its array data lands there. */
static int member_data(npz_load *L, const npz_member *m, uint8_t *dst, uint8_t *scratch) {
    uint32_t crc = 0;
    uint64_t got = 0;
    if (m->method == 0) {
        crc = crc_update(0, m->cdata, m->usize);
        got = m->usize;
    } else {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -15) != Z_OK) return LOAD_ERR(L, "zlib inflateInit2 failed");
        const uint8_t *in = m->cdata;
        uint64_t left = m->csize;
        int rc = Z_OK;
        while (rc != Z_STREAM_END && got <= m->usize) {
            if (zs.avail_in == 0 && left > 0) {
                uInt k = left > CHUNK ? CHUNK : (uInt)left;
                zs.next_in = (Bytef *)(uintptr_t)in;
                zs.avail_in = k;
                in += k;
                left -= k;
            }
            uInt room;
            uint8_t *out = inflate_target(m, dst, scratch, got, &room);
            zs.next_out = out;
            zs.avail_out = room;
            rc = inflate(&zs, Z_NO_FLUSH);
            crc = (uint32_t)crc32(crc, out, room - zs.avail_out);
            got += room - zs.avail_out;
            if (rc == Z_BUF_ERROR && zs.avail_in == 0 && left == 0) {
                inflateEnd(&zs);
                return LOAD_ERR(L, "'%s': member '%s.npy': corrupt data (unexpected end of "
                                "deflate stream)", L->path, m->name);
            }
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
                int e = LOAD_ERR(L, "'%s': member '%s.npy': corrupt data (%s)", L->path, m->name,
                                 zs.msg ? zs.msg : "inflate failed");
                inflateEnd(&zs);
                return e;
            }
        }
        inflateEnd(&zs);
    }
    if (got != m->usize)
        return LOAD_ERR(L, "'%s': member '%s.npy': %llu bytes of data, the archive says %llu",
                        L->path, m->name, (unsigned long long)got, (unsigned long long)m->usize);
    if (crc != m->crc)
        return LOAD_ERR(L, "'%s': member '%s.npy': CRC-32 mismatch (0x%08x in the archive, data "
                        "gives 0x%08x)", L->path, m->name, m->crc, crc);
    if (dst && m->method == 0) memcpy(dst, m->cdata + m->pre, (size_t)m->nbytes);
    return 0;
}

/* Parse and check everything, then copy: a bad file leaves the model as it
 * was. */
static int load_all(npz_load *L) {
    if (read_whole(L)) return -1;
    uint64_t cd_off, cd_size, count;
    if (find_central(L, &cd_off, &cd_size, &count)) return -1;
    L->m = calloc(count ? count : 1, sizeof *L->m);
    if (!L->m) return LOAD_ERR(L, "out of memory reading '%s'", L->path);
    uint64_t pos = cd_off;
    for (L->n = 0; L->n < count;) {
        npz_member *m = &L->m[L->n++];
        if (parse_entry(L, &pos, cd_off + cd_size, m, L->n - 1)) return -1;
    }
    uint8_t *scratch = malloc(CHUNK);
    if (!scratch) return LOAD_ERR(L, "out of memory reading '%s'", L->path);
    /* CRCs first: a damaged file is reported as damaged, not as whatever
     * its damaged header happens to say. */
    int rc = 0;
    for (uint64_t i = 0; i < L->n && !rc; i++) rc = member_data(L, &L->m[i], NULL, scratch);
    for (uint64_t i = 0; i < L->n && !rc; i++) rc = parse_npy(L, &L->m[i]);
    for (uint64_t i = 0; i < L->n && !rc; i++) rc = check_member(L, &L->m[i]);
    for (uint64_t i = 0; i < L->n && !rc; i++) {
        npz_member *m = &L->m[i];
        dbr_tensor *t = m->t;
        if (!t) {
            t = dbr_param_create(L->ctx, m->name, DBR_KIND_PARAM, m->dtype, m->ndim, m->shape);
            if (!t) {
                rc = LOAD_ERR(L, "'%s': cannot create parameter %s", L->path, m->name);
                break;
            }
            t->pending = true;
        }
        if (t->data) rc = member_data(L, m, t->data, scratch);   /* no data in meta mode */
    }
    free(scratch);
    return rc;
}

int dbr_load_(dbr_ctx *ctx, const char *path, const char *file, int line) {
    if (!ctx) return -1;
    if (!path || !*path) {
        dbr_set_error(ctx, file, line, "dbr_load", "empty path");
        return -1;
    }
    npz_load L = {ctx, file, line, path, NULL, 0, NULL, 0};
    int rc = load_all(&L);
    for (uint64_t i = 0; i < L.n; i++) free(L.m[i].name);
    free(L.m);
    free(L.buf);
    return rc;
}
