/* prof.c: `dbr prof`: trains a zoo model for a few steps on synthetic data
 * in each execution mode (eager, compiled, compiled with fusion) with the
 * kernel profiler on, tabulates where a step's time goes kernel by kernel,
 * and can write every kernel run as a Chrome trace (--trace). */
#include "tools/prof.h"

#include "dbr.h"
#include "ir/ir.h" /* dbr_human_bytes */
#include "models.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { M_EAGER, M_COMPILED, M_FUSED, N_MODES };
static const char *const mode_names[N_MODES] = {"eager", "compiled", "fused"};

typedef struct prof_args {
    const char *model, *trace;
    int64_t batch, steps, warmup;
    int threads;
    bool json, modes[N_MODES], gpt_given;
    dbr_gpt_config gpt; /* --layers, --width, --heads, --context, --vocab */
} prof_args;

/* One kernel name's runs over the timed steps. */
typedef struct kstat {
    const char *name;
    int64_t calls, bytes;
    double ms, flops;
    bool lib;
} kstat;

typedef struct mode_result {
    bool ran;
    double step_ms, nonlib_ms;      /* medians over the timed steps */
    double lib_ms, kernel_ms;       /* per step, means */
    double total_ms;                /* the timed steps together */
    kstat *k;
    int32_t n_k;
    dbr_prof_event *ev;             /* the timed steps' events, for --trace */
    int64_t n_ev;
    int64_t *step_t0, *step_ns;     /* per timed step */
    int64_t fused_groups, fused_ops; /* kernels generated, ops they hold (dbr_stats) */
    int64_t jit_kernels, jit_disk_hits; /* compiled by this mode, loaded from disk */
    double jit_ms, jit_disk_ms;
} mode_result;

/* The step's synthetic batch: inputs of the model's shape, labels in range. */
typedef struct synth {
    int rank;
    int64_t shape[4];
    void *x;
    int32_t *y;
    int64_t n_labels;
} synth;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

static void usage_prof(FILE *f) {
    fprintf(f,
            "usage: dbr prof --model mlp|cnn|gpt [flags]\n"
            "\n"
            "Trains a zoo model for a few steps on synthetic data in each execution mode with\n"
            "the kernel profiler on, and tabulates per mode where a step's time goes: each\n"
            "kernel (an op in eager mode, a plan launch in compiled mode, a generated kernel\n"
            "when fused) with its calls, time, share of the step, bytes moved and achieved\n"
            "GB/s (GFLOP/s for library calls), the median step time and the time outside\n"
            "library calls; then each mode's speedup over eager (docs/prof.md).\n"
            "\n"
            "  --model NAME       mlp, cnn or gpt (the zoo's default GPT; default mlp)\n"
            "  --batch B          batch size (default 64; gpt: 8 sequences of its context)\n"
            "  --layers L, --width W, --heads H, --context T, --vocab V\n"
            "                     the GPT's shape (default 4, 128, 4, 128, 256; a GPT-2 block:\n"
            "                     --layers 1 --width 768 --heads 12 --context 256)\n"
            "  --steps N          timed training steps per mode (default 10)\n"
            "  --warmup W         untimed steps first, compiling included (default 2)\n"
            "  --modes LIST       comma-separated: eager, compiled (fusion off), fused\n"
            "                     (compiled with fusion on); default all three\n"
            "  --threads T        BLAS and kernel threads (default: the library's choice)\n"
            "  --trace FILE       write every timed kernel run as Chrome trace JSON (open it in\n"
            "                     https://ui.perfetto.dev or chrome://tracing): one process per\n"
            "                     mode\n"
            "  --json             print one JSON object instead of the tables\n"
            "  -h, --help         this text\n");
}

static int bad_flag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_flag(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dbr prof: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see `dbr prof --help`)\n");
    va_end(ap);
    return 2;
}

static int parse_count(const char *flag, const char *v, int64_t min, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < min || x > 1000000)
        return bad_flag("%s expects an integer in [%lld, 1000000], got '%s'", flag,
                        (long long)min, v);
    *out = x;
    return 0;
}

static int parse_modes(const char *v, bool *modes) {
    char buf[128];
    if (strlen(v) >= sizeof buf) return bad_flag("--modes: list too long: '%s'", v);
    snprintf(buf, sizeof buf, "%s", v);
    memset(modes, 0, N_MODES * sizeof *modes);
    bool any = false;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int m = 0;
        while (m < N_MODES && strcmp(t, mode_names[m])) m++;
        if (m == N_MODES)
            return bad_flag("unknown mode '%s' in --modes (known: eager, compiled, fused)", t);
        modes[m] = any = true;
    }
    if (!any) return bad_flag("--modes needs at least one of eager, compiled, fused");
    return 0;
}

/* 0, 1 for --help, 2 for a bad flag (with the message printed). */
static int parse_prof(int argc, char **argv, prof_args *a) {
    *a = (prof_args){.model = "mlp", .batch = 0, .steps = 10, .warmup = 2,
                     .modes = {true, true, true}, .gpt = DBR_GPT_DEFAULT};
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            usage_prof(stdout);
            return 1;
        }
        if (!strcmp(f, "--json")) {
            a->json = true;
            continue;
        }
        if (strncmp(f, "--", 2) != 0) return bad_flag("unexpected argument '%s'", f);
        if (i + 1 >= argc) return bad_flag("flag %s needs a value", f);
        const char *v = argv[++i];
        int64_t n;
        if (!strcmp(f, "--model")) {
            if (strcmp(v, "mlp") && strcmp(v, "cnn") && strcmp(v, "gpt"))
                return bad_flag("%s model '%s' (dbr prof trains mlp, cnn or gpt)",
                                dbr_model_find(v) ? "cannot profile" : "unknown", v);
            a->model = v;
        } else if (!strcmp(f, "--batch")) {
            if (parse_count(f, v, 1, &a->batch)) return 2;
        } else if (!strcmp(f, "--steps")) {
            if (parse_count(f, v, 1, &a->steps)) return 2;
        } else if (!strcmp(f, "--warmup")) {
            if (parse_count(f, v, 0, &a->warmup)) return 2;
        } else if (!strcmp(f, "--threads")) {
            if (parse_count(f, v, 0, &n)) return 2;
            a->threads = (int)n;
        } else if (!strcmp(f, "--layers") || !strcmp(f, "--width") || !strcmp(f, "--heads") ||
                   !strcmp(f, "--context") || !strcmp(f, "--vocab")) {
            if (parse_count(f, v, 1, &n)) return 2;
            int64_t *field = f[2] == 'l' ? &a->gpt.layers : f[2] == 'w' ? &a->gpt.width
                             : f[2] == 'h' ? &a->gpt.heads : f[2] == 'c' ? &a->gpt.context
                                                                       : &a->gpt.vocab;
            *field = n;
            a->gpt_given = true;
        } else if (!strcmp(f, "--modes")) {
            if (parse_modes(v, a->modes)) return 2;
        } else if (!strcmp(f, "--trace")) {
            if (!*v) return bad_flag("--trace needs a file name");
            a->trace = v;
        } else {
            return bad_flag("unknown flag '%s'", f);
        }
    }
    if (a->gpt_given && strcmp(a->model, "gpt"))
        return bad_flag("--layers, --width, --heads, --context and --vocab need --model gpt");
    if (a->gpt.width % a->gpt.heads)
        return bad_flag("--width must be a multiple of --heads");
    if (!a->batch) a->batch = strcmp(a->model, "gpt") ? 64 : 8;
    return 0;
}

/* ---- synthetic data ------------------------------------------------------ */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int synth_make(const dbr_model_info *m, int64_t batch, synth *d) {
    bool gpt = !strcmp(m->name, "gpt");
    int64_t classes = gpt ? dbr_gpt_config_get().vocab : 10;
    d->rank = m->input_rank ? m->input_rank + 1 : 2;
    d->shape[0] = batch;
    d->shape[1] = 784;
    for (int i = 0; i < m->input_rank; i++) d->shape[1 + i] = m->input_dims[i];
    if (gpt) d->shape[1] = dbr_gpt_config_get().context; /* input_dims holds the default's */
    int64_t numel = 1;
    for (int i = 0; i < d->rank; i++) numel *= d->shape[i];
    d->n_labels = gpt ? batch * d->shape[1] : batch; /* gpt: one label per token */
    d->x = malloc((size_t)numel * (m->input_dtype == DBR_I32 ? sizeof(int32_t) : sizeof(float)));
    d->y = malloc((size_t)d->n_labels * sizeof *d->y);
    if (!d->x || !d->y) return -1;
    uint64_t s = 1;
    for (int64_t i = 0; i < numel; i++) {
        uint64_t r = splitmix(&s);
        if (m->input_dtype == DBR_I32)
            ((int32_t *)d->x)[i] = (int32_t)(r % (uint64_t)classes);
        else
            ((float *)d->x)[i] = (float)(r >> 40) / (float)(1 << 24);
    }
    for (int64_t i = 0; i < d->n_labels; i++) d->y[i] = (int32_t)(splitmix(&s) % (uint64_t)classes);
    return 0;
}

/* One training step as `dbr train` runs it: forward, cross-entropy,
 * backward, the optimizer's update. 0 or -1 (dbr_error says why). */
static int train_step(dbr_ctx *ctx, const dbr_model_info *m, const synth *d) {
    dbr_step_begin(ctx);
    dbr_tensor *x = dbr_input(ctx, m->input_dtype, d->rank, d->shape, d->x, false);
    dbr_tensor *z = m->fn(ctx, x);
    if (z && z->ndim > 2) z = dbr_reshape(ctx, z, DBR_SHAPE(-1, z->shape[z->ndim - 1]));
    dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(d->n_labels), d->y, false);
    dbr_tensor *loss = dbr_cross_entropy(ctx, z, y);
    int rc = !loss || dbr_backward(ctx, loss) || dbr_optim_step(ctx) ? -1 : 0;
    if (dbr_step_end(ctx)) rc = -1;
    return rc;
}


static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int64_t n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int cmp_kstat(const void *a, const void *b) {
    const kstat *x = a, *y = b;
    if (x->ms != y->ms) return x->ms < y->ms ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* Sums the events by kernel name and the steps' times into r. */
static int summarize(const dbr_prof_event *ev, int64_t n_ev, const int64_t *ends, int64_t steps,
                     mode_result *r) {
    double *step = malloc((size_t)steps * sizeof *step);
    double *nonlib = malloc((size_t)steps * sizeof *nonlib);
    r->k = calloc((size_t)n_ev + 1, sizeof *r->k);
    if (!step || !nonlib || !r->k) {
        free(step);
        free(nonlib);
        return -1;
    }
    double lib_total = 0, kernel_total = 0;
    int64_t e = 0;
    for (int64_t s = 0; s < steps; s++) {
        double lib = 0;
        for (; e < ends[s]; e++) {
            const dbr_prof_event *v = &ev[e];
            double ms = 1e-6 * (double)v->dur_ns;
            kernel_total += ms;
            if (v->lib) lib += ms;
            int32_t k = 0;
            while (k < r->n_k && strcmp(r->k[k].name, v->name)) k++;
            if (k == r->n_k) r->k[r->n_k++] = (kstat){.name = v->name, .lib = v->lib};
            r->k[k].calls++;
            r->k[k].bytes += v->bytes;
            r->k[k].ms += ms;
            r->k[k].flops += v->flops;
        }
        step[s] = 1e-6 * (double)r->step_ns[s];
        r->total_ms += step[s];
        nonlib[s] = step[s] - lib;
        lib_total += lib;
    }
    qsort(r->k, (size_t)r->n_k, sizeof *r->k, cmp_kstat);
    r->step_ms = median(step, steps);
    r->nonlib_ms = median(nonlib, steps);
    r->lib_ms = lib_total / (double)steps;
    r->kernel_ms = kernel_total / (double)steps;
    free(step);
    free(nonlib);
    return 0;
}

static int fail_ctx(dbr_ctx *ctx, const char *mode) {
    const char *e = dbr_error(ctx);
    fprintf(stderr, "dbr: prof (%s): %s\n", mode, e ? e : "unknown error");
    return 1;
}

/* Runs the warmup and timed steps of one mode; 0 or 1 (message printed). */
static int run_mode(const prof_args *a, const dbr_model_info *m, const synth *d, int mode,
                    mode_result *r) {
    dbr_config cfg = dbr_config_default();
    cfg.threads = a->threads;
    cfg.mode = mode == M_EAGER ? DBR_MODE_EAGER : DBR_MODE_COMPILED;
    cfg.no_fuse = mode != M_FUSED; /* DBR_NO_FUSE=1 turns the fused mode's fusion off too */
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (!ctx) {
        fprintf(stderr, "dbr: out of memory\n");
        return 1;
    }
    int rc = 0;
    dbr_stats jit0;
    dbr_stats_get(ctx, &jit0);
    int64_t *ends = calloc((size_t)a->steps, sizeof *ends);
    r->step_t0 = calloc((size_t)a->steps, sizeof *r->step_t0);
    r->step_ns = calloc((size_t)a->steps, sizeof *r->step_ns);
    if (!ends || !r->step_t0 || !r->step_ns) {
        fprintf(stderr, "dbr: out of memory\n");
        rc = 1;
        goto out;
    }
    dbr_optim opt = {.lr = m->lr, .momentum = 0.9};
    opt.kind = !strcmp(m->optimizer, "sgd")        ? DBR_SGD
               : !strcmp(m->optimizer, "momentum") ? DBR_MOMENTUM
               : !strcmp(m->optimizer, "adamw")    ? DBR_ADAMW
                                                   : DBR_ADAM;
    if (dbr_error(ctx) || dbr_optim_set(ctx, &opt)) {
        rc = fail_ctx(ctx, mode_names[mode]);
        goto out;
    }
    for (int64_t s = 0; s < a->warmup; s++)
        if (train_step(ctx, m, d)) {
            rc = fail_ctx(ctx, mode_names[mode]);
            goto out;
        }
    dbr_prof_enable(ctx, true);
    dbr_prof_reset(ctx);
    for (int64_t s = 0; s < a->steps; s++) {
        int64_t t0 = now_ns();
        if (train_step(ctx, m, d)) {
            rc = fail_ctx(ctx, mode_names[mode]);
            goto out;
        }
        r->step_t0[s] = t0;
        r->step_ns[s] = now_ns() - t0;
        ends[s] = dbr_prof_events(ctx, NULL);
    }
    const dbr_prof_event *ev;
    int64_t n = dbr_prof_events(ctx, &ev);
    r->ev = malloc((size_t)(n + 1) * sizeof *r->ev);
    if (!r->ev || summarize(ev, n, ends, a->steps, r)) {
        fprintf(stderr, "dbr: out of memory\n");
        rc = 1;
        goto out;
    }
    if (n) memcpy(r->ev, ev, (size_t)n * sizeof *ev);
    r->n_ev = n;
    dbr_stats st;
    dbr_stats_get(ctx, &st);
    /* the code generator's counts are the process's: this mode's are the growth */
    r->jit_kernels = st.jit_kernels - jit0.jit_kernels;
    r->jit_disk_hits = st.jit_disk_hits - jit0.jit_disk_hits;
    r->jit_ms = st.jit_ms - jit0.jit_ms;
    r->jit_disk_ms = st.jit_disk_ms - jit0.jit_disk_ms;
    r->fused_groups = st.fused_groups;
    r->fused_ops = st.fused_ops;
    r->ran = true;
out:
    free(ends);
    dbr_ctx_free(ctx);
    return rc;
}

static void mode_result_free(mode_result *r) {
    free(r->k);
    free(r->ev);
    free(r->step_t0);
    free(r->step_ns);
}

/* ---- output ---------------------------------------------------------------- */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* GB/s of bytes moved, or GFLOP/s for library calls. */
static double kstat_rate(const kstat *k) {
    if (k->ms <= 0) return 0;
    return (k->lib && k->flops > 0 ? k->flops : (double)k->bytes) / (k->ms * 1e6);
}

static double speedup(const mode_result *r, int mode, bool nonlib) {
    const mode_result *e = &r[M_EAGER], *x = &r[mode];
    if (!e->ran || !x->ran) return NAN;
    double a = nonlib ? e->nonlib_ms : e->step_ms, b = nonlib ? x->nonlib_ms : x->step_ms;
    return b > 0 ? a / b : NAN;
}

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.4f", v);
    else
        fputs("null", f);
}

static void print_json(const prof_args *a, const mode_result *r) {
    printf("{\"model\": \"%s\", \"batch\": %lld, \"steps\": %lld, \"warmup\": %lld, \"modes\": {",
           a->model, (long long)a->batch, (long long)a->steps, (long long)a->warmup);
    bool first = true;
    for (int m = 0; m < N_MODES; m++) {
        if (!r[m].ran) continue;
        printf("%s\"%s\": {\"step_ms\": %.4f, \"nonlib_ms\": %.4f, \"lib_ms\": %.4f, "
               "\"kernel_ms\": %.4f, \"kernels_per_step\": %.2f, \"fused_groups\": %lld, "
               "\"fused_ops\": %lld, \"jit_kernels\": %lld, \"jit_ms\": %.3f, "
               "\"jit_disk_hits\": %lld, \"jit_disk_ms\": %.3f, \"kernels\": [",
               first ? "" : ", ", mode_names[m], r[m].step_ms, r[m].nonlib_ms, r[m].lib_ms,
               r[m].kernel_ms, (double)r[m].n_ev / (double)a->steps, (long long)r[m].fused_groups,
               (long long)r[m].fused_ops, (long long)r[m].jit_kernels, r[m].jit_ms,
               (long long)r[m].jit_disk_hits, r[m].jit_disk_ms);
        first = false;
        for (int32_t k = 0; k < r[m].n_k; k++) {
            const kstat *s = &r[m].k[k];
            printf("%s{\"name\": ", k ? ", " : "");
            json_str(stdout, s->name);
            printf(", \"calls\": %lld, \"total_ms\": %.4f, \"bytes\": %lld, \"gbps\": %.3f, "
                   "\"gflops\": %.3f, \"lib\": %s}",
                   (long long)s->calls, s->ms, (long long)s->bytes,
                   s->ms > 0 ? (double)s->bytes / (s->ms * 1e6) : 0.0,
                   s->ms > 0 ? s->flops / (s->ms * 1e6) : 0.0, s->lib ? "true" : "false");
        }
        printf("]}");
    }
    printf("}, \"speedup_fused_vs_eager\": ");
    json_num(stdout, speedup(r, M_FUSED, false));
    printf(", \"speedup_fused_vs_eager_nonlib\": ");
    json_num(stdout, speedup(r, M_FUSED, true));
    printf(", \"speedup_compiled_vs_eager\": ");
    json_num(stdout, speedup(r, M_COMPILED, false));
    printf(", \"speedup_compiled_vs_eager_nonlib\": ");
    json_num(stdout, speedup(r, M_COMPILED, true));
    printf("}\n");
}

#define TABLE_ROWS 20

static void print_tables(const prof_args *a, const mode_result *r) {
    printf("dbr prof: %s, batch %lld, %lld timed steps per mode after %lld warmup\n", a->model,
           (long long)a->batch, (long long)a->steps, (long long)a->warmup);
    for (int m = 0; m < N_MODES; m++) {
        const mode_result *x = &r[m];
        if (!x->ran) continue;
        printf("\n%s: step %.2f ms (median), outside library calls %.2f ms; per step: %.1f "
               "kernels, library %.2f ms, other kernels %.2f ms, outside kernels %.2f ms\n",
               mode_names[m], x->step_ms, x->nonlib_ms, (double)x->n_ev / (double)a->steps,
               x->lib_ms, x->kernel_ms - x->lib_ms, x->total_ms / (double)a->steps - x->kernel_ms);
        if (m == M_FUSED)
            printf("  %lld generated kernels hold %lld ops%s; JIT: %lld kernels in %.1f ms "
                   "(%.2f ms each), %lld from the disk cache in %.2f ms\n",
                   (long long)x->fused_groups, (long long)x->fused_ops,
                   x->fused_groups ? "" : " (fusion is off: DBR_NO_FUSE, or no code generator)",
                   (long long)x->jit_kernels, x->jit_ms,
                   x->jit_kernels ? x->jit_ms / (double)x->jit_kernels : 0.0,
                   (long long)x->jit_disk_hits, x->jit_disk_ms);
        printf("  %-32s %7s %10s %7s %11s %14s\n", "kernel", "calls", "total ms", "% step",
               "bytes", "rate");
        double rest_ms = 0;
        int32_t rest = 0;
        for (int32_t k = 0; k < x->n_k; k++) {
            const kstat *s = &x->k[k];
            if (k >= TABLE_ROWS) {
                rest_ms += s->ms;
                rest++;
                continue;
            }
            char b[32], rate[32];
            dbr_human_bytes(s->bytes, b, sizeof b);
            snprintf(rate, sizeof rate, "%.2f %s", kstat_rate(s),
                     s->lib && s->flops > 0 ? "GFLOP/s" : "GB/s");
            printf("  %-32.32s %7lld %10.3f %6.1f%% %11s %14s\n", s->name, (long long)s->calls,
                   s->ms, x->total_ms > 0 ? 100 * s->ms / x->total_ms : 0.0, b, rate);
        }
        if (rest)
            printf("  (%d more kernels: %.3f ms, %.1f%%)\n", (int)rest, rest_ms,
                   x->total_ms > 0 ? 100 * rest_ms / x->total_ms : 0.0);
    }
    if (!r[M_EAGER].ran || (!r[M_COMPILED].ran && !r[M_FUSED].ran)) return;
    printf("\nspeedup over eager     step  outside library\n");
    for (int m = M_COMPILED; m < N_MODES; m++)
        if (r[m].ran)
            printf("  %-16s %9.2fx %15.2fx\n", mode_names[m], speedup(r, m, false),
                   speedup(r, m, true));
}

/* Chrome trace event format: a process per mode, a "steps" and a "kernels"
 * thread; microseconds from the start of that mode's first timed step. */
static int write_trace(const char *path, const prof_args *a, const mode_result *r) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp) return -1;
    snprintf(tmp, n + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    mode_t mask = umask(0); /* mkstemp makes 0600; the trace gets a new file's usual mode */
    umask(mask);
    if (fd >= 0) fchmod(fd, 0666 & ~mask);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        fprintf(stderr, "dbr: prof: cannot write %s: %s\n", path, strerror(errno));
        free(tmp);
        return -1;
    }
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"model\": \"%s\", \"batch\": %lld},"
               "\n\"traceEvents\": [\n",
            a->model, (long long)a->batch);
    bool first = true;
    for (int m = 0; m < N_MODES; m++) {
        const mode_result *x = &r[m];
        if (!x->ran) continue;
        int pid = m + 1;
        int64_t base = x->step_t0[0];
        fprintf(f, "%s{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, "
                   "\"args\": {\"name\": \"%s\"}},\n",
                first ? "" : ",\n", pid, mode_names[m]);
        fprintf(f, "{\"name\": \"process_sort_index\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, "
                   "\"args\": {\"sort_index\": %d}},\n",
                pid, pid);
        fprintf(f, "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 1, "
                   "\"args\": {\"name\": \"steps\"}},\n",
                pid);
        fprintf(f, "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 2, "
                   "\"args\": {\"name\": \"kernels\"}}",
                pid);
        first = false;
        for (int64_t s = 0; s < a->steps; s++)
            fprintf(f, ",\n{\"name\": \"step %lld\", \"cat\": \"step\", \"ph\": \"X\", \"pid\": %d, "
                       "\"tid\": 1, \"ts\": %.3f, \"dur\": %.3f}",
                    (long long)s, pid, 1e-3 * (double)(x->step_t0[s] - base),
                    1e-3 * (double)x->step_ns[s]);
        for (int64_t e = 0; e < x->n_ev; e++) {
            const dbr_prof_event *v = &x->ev[e];
            fprintf(f, ",\n{\"name\": ");
            json_str(f, v->name);
            fprintf(f, ", \"cat\": ");
            json_str(f, v->phase);
            fprintf(f, ", \"ph\": \"X\", \"pid\": %d, \"tid\": 2, \"ts\": %.3f, \"dur\": %.3f, "
                       "\"args\": {\"src\": ",
                    pid, 1e-3 * (double)(v->t0_ns - base), 1e-3 * (double)v->dur_ns);
            json_str(f, v->src);
            fprintf(f, ", \"bytes\": %lld, \"phase\": ", (long long)v->bytes);
            json_str(f, v->phase);
            if (v->flops > 0) fprintf(f, ", \"flops\": %.0f", v->flops);
            fprintf(f, ", \"lib\": %s}}", v->lib ? "true" : "false");
        }
    }
    fprintf(f, "\n]}\n");
    int bad = ferror(f);
    bad |= fclose(f);
    if (bad || rename(tmp, path)) {
        fprintf(stderr, "dbr: prof: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

int dbr_cmd_prof(int argc, char **argv) {
    prof_args a;
    int prc = parse_prof(argc, argv, &a);
    if (prc == 1) return 0; /* --help */
    if (prc) return prc;
    const dbr_model_info *m = dbr_model_find(a.model);
    if (!strcmp(a.model, "gpt")) dbr_gpt_configure(&a.gpt);
    synth d = {0};
    mode_result r[N_MODES] = {0};
    int rc = 0;
    if (synth_make(m, a.batch, &d)) {
        fprintf(stderr, "dbr: out of memory\n");
        rc = 1;
    }
    for (int k = 0; k < N_MODES && rc == 0; k++)
        if (a.modes[k]) rc = run_mode(&a, m, &d, k, &r[k]);
    if (rc == 0 && a.trace && write_trace(a.trace, &a, r)) rc = 1;
    if (rc == 0) {
        if (a.json)
            print_json(&a, r);
        else
            print_tables(&a, r);
        if (!a.json && a.trace) printf("\nwrote %s\n", a.trace);
    }
    for (int k = 0; k < N_MODES; k++) mode_result_free(&r[k]);
    free(d.x);
    free(d.y);
    return rc;
}
