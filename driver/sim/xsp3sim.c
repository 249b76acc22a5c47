/*
 * xsp3sim.c - a simulated libxspress3 exporting the symbols of xsp3_abi.h.
 *
 * Why it exists: the IOC, the binding and their tests need an Xspress3 that
 * behaves like the hardware (frame sources, circular memory, scalers that agree
 * with the spectra, faults) without a detector on the network.
 *
 * Design notes
 * - Up to 16 systems ("paths"), each with its own mutex and a generator thread
 *   that completes internally timed frames by the wall clock, so progress does
 *   not depend on anyone polling.  A global rwlock guards the path table: every
 *   call holds it for reading, xsp3_config/xsp3_close take it for writing.
 * - Frame memory holds no histograms.  Each slot keeps up to MAX_LAYERS small
 *   records (one per frame acquired into it since it was last cleared); a record
 *   names the run snapshot (seed, run number, per-channel rate, windows,
 *   thresholds), the absolute frame number, the live ticks and a channel mask.
 *   Events are regenerated from those at read time, so reads are deterministic,
 *   cost only the memset plus a few ns per event, and clearing is metadata work.
 *   A frame acquired into a slot that already holds MAX_LAYERS records is folded
 *   into the last record (its live time grows and its events are regenerated
 *   with the longer exposure).
 * - Changing the bin count (xsp3_format_run with another nbits_eng) discards
 *   frame memory, as the layout of the hardware memory changes with it.
 * - Triggers and gates that arrive while the system is not armed, or beyond
 *   the run length, are ignored and return XSP3_OK (as pulses are on hardware).
 * - continue, pause, xsp3sim_trigger and xsp3sim_gate act for card 0 or -1;
 *   other valid cards are slaved to card 0 and the call is accepted as a no-op.
 * - The error text is global (as in the SDK) and guarded by a mutex;
 *   xsp3_get_error_message() returns a per-thread copy that stays valid until
 *   the calling thread asks again.
 * - Frame sources: SWENB_HWMARKER is treated like the external pulse sources
 *   (each xsp3sim_trigger pulse completes a frame).  Without any itfg setup a
 *   run is as long as frame memory (unbounded in circular mode) and the
 *   internal frame time is DEFAULT_COL_TIME.  arm/start while a run is active
 *   is a no-op (start after arm is the "go").
 * - Scalers per frame and channel come from the same generated events as the
 *   histogram.  Processed events N ~ Poisson(mean), the mean following a
 *   non-paralysable dead-time model of the input rate; PILEUP = round(N * p)
 *   with p = rate * 100 ns (max 0.3); one reset per RESET_EVERY events costing
 *   RESET_COST ticks; ALL_EVENT = N + PILEUP; events below the good threshold
 *   count only in ALL_EVENT.  N is capped so that
 *   ALL_EVENT * (6 + 1) + RESET_TICKS <= 0.95 * TIME.
 * - Fault injection covers every xsp3_* function of the header except
 *   xsp3_get_error_message (it cannot return a code); the simulator-only
 *   xsp3sim_* controls are never faulted.
 * - Settings file (xsp3sim_settings.txt in the given directory), written via a
 *   temporary file and rename:
 *       xsp3sim-settings 1
 *       channels <n>
 *       bins <b>
 *       chan <c> thres <t> win0 <lo> <hi> win1 <lo> <hi>     (one per channel)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "xsp3_abi.h"

#define MAX_SYSTEMS 16
#define MAX_CARDS 16
#define CHAN_PER_CARD 16
#define MAX_CHAN (MAX_CARDS * CHAN_PER_CARD)
#define MASK_WORDS (MAX_CHAN / 64)
#define MAX_LAYERS 4
#define ICDF_SIZE 65536u
#define TICKS_PER_S 80000000.0
#define EVENT_WIDTH 6
#define RESET_EVERY 100u      /* one detector reset per this many events */
#define RESET_COST 1000u      /* ticks of dead time per reset */
#define PILEUP_TAU_S 100e-9   /* pile-up fraction = rate * tau (capped) */
#define PILEUP_MAX 0.3
#define DEAD_BUDGET 0.95      /* dead time never exceeds this fraction of TIME */
#define DEFAULT_RATE 50000.0
#define DEFAULT_COL_TIME 8000000u /* 0.1 s when itfg was never set up */
#define DEFAULT_NBITS 12
#define MIN_SLEEP_NS 500000LL /* generator batches frames shorter than this */
#define MAX_FAULTS 64
#define MAX_REFUSED 16
#define SETTINGS_FILE "xsp3sim_settings.txt"
#define SETTINGS_MAGIC "xsp3sim-settings 1"

/* ------------------------------------------------------------------ errors */

static pthread_mutex_t g_err_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_err[512] = "no error";
static _Thread_local char t_err[512];

static int set_error(int code, const char *fn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_error(int code, const char *fn, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_err_lock);
    snprintf(g_err, sizeof g_err, "%s: %s", fn, msg);
    pthread_mutex_unlock(&g_err_lock);
    return code;
}

#define FAIL(code, ...) set_error((code), __func__, __VA_ARGS__)

char *xsp3_get_error_message(void)
{
    pthread_mutex_lock(&g_err_lock);
    memcpy(t_err, g_err, sizeof t_err);
    pthread_mutex_unlock(&g_err_lock);
    return t_err;
}

/* ------------------------------------------------------------------ faults */

typedef struct {
    bool used;
    char fn[64];
    int code;
    int remaining;
} Fault;

static pthread_mutex_t g_fault_lock = PTHREAD_MUTEX_INITIALIZER;
static Fault g_faults[MAX_FAULTS];

static const char *const k_fault_functions[] = {
    "xsp3_config", "xsp3_close", "xsp3_get_num_chan", "xsp3_get_num_cards",
    "xsp3_get_bins_per_mca", "xsp3_get_num_tf", "xsp3_get_generation", "xsp3_has_itfg",
    "xsp3_clocks_setup", "xsp3_restore_settings", "xsp3_save_settings", "xsp3_format_run",
    "xsp3_set_run_flags", "xsp3_set_glob_timeA", "xsp3_set_glob_timeFixed", "xsp3_itfg_setup",
    "xsp3_itfg_setup2", "xsp3_itfg_start", "xsp3_itfg_stop", "xsp3_histogram_clear",
    "xsp3_histogram_arm", "xsp3_histogram_start", "xsp3_histogram_continue",
    "xsp3_histogram_pause", "xsp3_histogram_stop", "xsp3_histogram_is_any_busy",
    "xsp3_scaler_check_progress", "xsp3_scaler_check_progress_details",
    "xsp3_histogram_read4d", "xsp3_scaler_read", "xsp3_hist_dtc_read4d",
    "xsp3_histogram_circ_ack", "xsp3_set_window", "xsp3_get_window", "xsp3_set_good_thres",
    "xsp3_get_good_thres", "xsp3_get_dtcfactor", NULL,
};

/* Returns the injected code if a fault fires on this call of fn, else 0. */
static int fault_check(const char *fn)
{
    int code = 0;
    pthread_mutex_lock(&g_fault_lock);
    for (int i = 0; i < MAX_FAULTS; i++) {
        Fault *f = &g_faults[i];
        if (!f->used || strcmp(f->fn, fn) != 0)
            continue;
        if (f->remaining == 0) {
            if (code == 0) {
                code = f->code;
                f->used = false;
            }
        } else {
            f->remaining--;
        }
    }
    pthread_mutex_unlock(&g_fault_lock);
    if (code != 0) {
        pthread_mutex_lock(&g_err_lock);
        snprintf(g_err, sizeof g_err, "simulated fault in %s", fn);
        pthread_mutex_unlock(&g_err_lock);
    }
    return code;
}

#define FAULT_POINT()                          \
    do {                                       \
        int fc_ = fault_check(__func__);       \
        if (fc_ != 0)                          \
            return fc_;                        \
    } while (0)

int xsp3sim_inject_fault(const char *function, int code, int after_calls)
{
    if (function == NULL)
        return FAIL(XSP3_RANGE_CHECK, "function name is NULL");
    bool known = false;
    for (int i = 0; k_fault_functions[i] != NULL; i++)
        if (strcmp(k_fault_functions[i], function) == 0)
            known = true;
    if (!known)
        return FAIL(XSP3_ERROR, "unknown function '%.80s'", function);
    if (code >= 0)
        return FAIL(XSP3_RANGE_CHECK, "fault code %d must be a negative XSP3_* code", code);
    if (after_calls < 0)
        return FAIL(XSP3_RANGE_CHECK, "after_calls %d must be >= 0", after_calls);
    pthread_mutex_lock(&g_fault_lock);
    for (int i = 0; i < MAX_FAULTS; i++) {
        Fault *f = &g_faults[i];
        if (f->used)
            continue;
        f->used = true;
        snprintf(f->fn, sizeof f->fn, "%s", function);
        f->code = code;
        f->remaining = after_calls;
        pthread_mutex_unlock(&g_fault_lock);
        return XSP3_OK;
    }
    pthread_mutex_unlock(&g_fault_lock);
    return FAIL(XSP3_OUT_OF_MEMORY, "too many pending faults (max %d)", MAX_FAULTS);
}

int xsp3sim_clear_faults(void)
{
    pthread_mutex_lock(&g_fault_lock);
    memset(g_faults, 0, sizeof g_faults);
    pthread_mutex_unlock(&g_fault_lock);
    return XSP3_OK;
}

/* --------------------------------------------------------- refused address */

static pthread_mutex_t g_refuse_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_refused[MAX_REFUSED][64];
static int g_nrefused;

int xsp3sim_refuse_address(const char *address)
{
    pthread_mutex_lock(&g_refuse_lock);
    if (address == NULL || address[0] == '\0') {
        g_nrefused = 0;
        pthread_mutex_unlock(&g_refuse_lock);
        return XSP3_OK;
    }
    if (strlen(address) >= sizeof g_refused[0]) {
        pthread_mutex_unlock(&g_refuse_lock);
        return FAIL(XSP3_RANGE_CHECK, "address too long");
    }
    for (int i = 0; i < g_nrefused; i++) {
        if (strcmp(g_refused[i], address) == 0) {
            pthread_mutex_unlock(&g_refuse_lock);
            return XSP3_OK;
        }
    }
    if (g_nrefused >= MAX_REFUSED) {
        pthread_mutex_unlock(&g_refuse_lock);
        return FAIL(XSP3_RANGE_CHECK, "too many refused addresses (max %d)", MAX_REFUSED);
    }
    snprintf(g_refused[g_nrefused++], sizeof g_refused[0], "%s", address);
    pthread_mutex_unlock(&g_refuse_lock);
    return XSP3_OK;
}

static bool address_refused(const char *address)
{
    if (address == NULL)
        return false;
    bool hit = false;
    pthread_mutex_lock(&g_refuse_lock);
    for (int i = 0; i < g_nrefused; i++)
        if (strcmp(g_refused[i], address) == 0)
            hit = true;
    pthread_mutex_unlock(&g_refuse_lock);
    return hit;
}

int xsp3sim_version(void) { return 1; }

/* -------------------------------------------------------------- random */

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t rng_next(uint64_t *state)
{
    *state += 0x9E3779B97F4A7C15ULL;
    return mix64(*state);
}

static inline double rng_u01(uint64_t *state)
{
    return ((double)(rng_next(state) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double rng_gauss(uint64_t *state)
{
    double u1 = rng_u01(state), u2 = rng_u01(state);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Poisson: exact product method for small means, rounded normal above 30. */
static uint64_t rng_poisson(uint64_t *state, double mean)
{
    if (!(mean > 0.0))
        return 0;
    if (mean < 30.0) {
        double limit = exp(-mean), p = 1.0;
        uint64_t k = 0;
        for (;;) {
            p *= rng_u01(state);
            if (p <= limit)
                return k;
            k++;
        }
    }
    double v = floor(mean + sqrt(mean) * rng_gauss(state) + 0.5);
    return v < 0.0 ? 0 : (uint64_t)v;
}

/* -------------------------------------------------------------- state */

typedef struct {
    double rate;          /* input count rate, counts/s */
    double mean_per_tick; /* expected processed events per live tick */
    double p_pile;        /* fraction of events that pile up */
    uint32_t thres;
    uint32_t win[2][2];
} ChanParams;

/* Parameters of (part of) a run; frames hold a counted reference. */
typedef struct {
    int refs;
    uint64_t seed;
    uint64_t run_no;
    uint32_t bins;
    int nchan;
    ChanParams ch[];
} Snap;

typedef struct {
    Snap *snap;
    uint64_t frame; /* absolute frame number within its run */
    uint64_t live;  /* live ticks */
    uint64_t mask[MASK_WORDS];
} Layer;

typedef struct {
    uint8_t nlayers;
    uint8_t unacked;      /* circular mode: holds a frame not yet acked */
    uint64_t unacked_run; /* run that wrote the unacked frame */
    Layer layer[MAX_LAYERS];
} Slot;

enum { ST_IDLE = 0, ST_ARMED = 1, ST_RUNNING = 2 };

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool thread_started;
    bool quit;

    int ncards, nchan, mem;
    int nbits;
    uint32_t bins;
    int run_flags;
    uint32_t timeA[MAX_CARDS];
    uint32_t timeFixed[MAX_CARDS];

    bool itfg_set;
    int64_t itfg_frames;
    uint32_t col_time;
    int trig_mode, gap_mode;
    int acq_in_pause, marker_period, marker_frame;

    double *rate;
    uint32_t *thres;
    uint32_t (*win)[2][2];
    uint16_t **icdf; /* per channel, for the current bin count, built lazily */
    uint64_t seed;
    uint64_t run_no;

    Slot *slots;
    uint8_t *occupied; /* per slot: nonzero if it holds layers or an unacked frame */

    /* current run */
    Snap *snap;
    int state;
    int source;
    int trig;
    bool circular;
    uint32_t run_col;
    int64_t run_len;
    int64_t completed;
    Xsp3ErrFlag errflags;
    bool first_done;  /* *_ONLY_FIRST: the burst was started */
    int64_t last_ns;  /* reference for software / pulse live time */
    bool gate_open;
    int64_t gate_ns;
    bool sched_active;
    int64_t sched_t0, sched_period, sched_total, sched_done;
} System;

/* Writer-preferring where available, so xsp3_close is not starved by busy readers. */
#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
static pthread_rwlock_t g_table_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
#else
static pthread_rwlock_t g_table_lock = PTHREAD_RWLOCK_INITIALIZER;
#endif
static System *g_sys[MAX_SYSTEMS];

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t ns_to_ticks(int64_t ns)
{
    return ns <= 0 ? 0 : (uint64_t)ns * 2u / 25u; /* 80 ticks per us */
}

static System *acquire(int path, const char *fn, int *err)
{
    pthread_rwlock_rdlock(&g_table_lock);
    if (path < 0 || path >= MAX_SYSTEMS || g_sys[path] == NULL) {
        pthread_rwlock_unlock(&g_table_lock);
        *err = set_error(XSP3_INVALID_PATH, fn, "path %d is not open", path);
        return NULL;
    }
    System *s = g_sys[path];
    pthread_mutex_lock(&s->lock);
    return s;
}

static void release(System *s)
{
    pthread_mutex_unlock(&s->lock);
    pthread_rwlock_unlock(&g_table_lock);
}

#define ENTER_NOFAULT(pathv)                           \
    int err_ = 0;                                      \
    System *s = acquire((pathv), __func__, &err_);     \
    if (s == NULL)                                     \
        return err_;

#define ENTER(pathv)   \
    FAULT_POINT();     \
    ENTER_NOFAULT(pathv)

#define LEAVE(value)          \
    do {                      \
        release(s);           \
        return (value);       \
    } while (0)

static int check_card(System *s, int card, bool allow_all, const char *fn)
{
    if (card == -1 && allow_all)
        return XSP3_OK;
    if (card < 0 || card >= s->ncards)
        return set_error(XSP3_ILLEGAL_CARD, fn, "card %d out of range 0..%d%s", card,
                         s->ncards - 1, allow_all ? " (or -1 for all)" : "");
    return XSP3_OK;
}

#define CHECK_CARD(card, allow_all)                                 \
    do {                                                            \
        int cc_ = check_card(s, (card), (allow_all), __func__);     \
        if (cc_ != XSP3_OK)                                         \
            LEAVE(cc_);                                             \
    } while (0)

/* ------------------------------------------------------- spectrum model */

/* Fraction of a Gaussian line (centre mu, width sigma, keV) below e. */
static double gauss_cdf(double e, double mu, double sigma)
{
    return 0.5 * (1.0 + erf((e - mu) / (sigma * 1.4142135623730951)));
}

/* Channel-specific factor in [1-amp, 1+amp], stable for a given (chan, item). */
static double chan_factor(int chan, int item, double amp)
{
    uint64_t h = mix64(0x5851F42D4C957F2DULL ^ ((uint64_t)chan * 0x2545F4914F6CDD1DULL) ^ (uint64_t)(item + 1) * 0x9E3779B97F4A7C15ULL);
    double u = (double)(h >> 11) / 9007199254740992.0;
    return 1.0 + amp * (2.0 * u - 1.0);
}

/* Expected counts of channel `chan` in energy interval [e0, e1) keV (unnormalised). */
static double model_integral(int chan, double e0, double e1)
{
    static const struct { double kev, amp, sigma; } lines[] = {
        {6.40, 1.00, 0.0637},  /* Fe Ka, FWHM 150 eV */
        {7.06, 0.14, 0.0637},  /* Fe Kb */
        {8.05, 0.75, 0.0637},  /* Cu Ka */
        {8.91, 0.11, 0.0637},  /* Cu Kb */
        {12.0, 0.45, 0.0637},  /* elastic */
        {11.65, 0.30, 0.25},   /* Compton shoulder below the elastic peak */
        {0.12, 0.04, 0.05},    /* electronic noise just above zero */
    };
    double total = 0.0;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        double amp = lines[i].amp * chan_factor(chan, (int)i, 0.05);
        total += amp * (gauss_cdf(e1, lines[i].kev, lines[i].sigma) -
                        gauss_cdf(e0, lines[i].kev, lines[i].sigma));
    }
    /* smooth falling background from 0.3 keV: b * exp(-e / 4 keV) */
    const double b = 0.35 * chan_factor(chan, 100, 0.05), scale = 4.0, start = 0.3;
    double lo = e0 < start ? start : e0, hi = e1;
    if (hi > lo)
        total += b * (exp(-(lo - start) / scale) - exp(-(hi - start) / scale));
    return total;
}

static uint16_t *build_icdf(int chan, uint32_t bins)
{
    double *cum = malloc(sizeof(double) * bins);
    uint16_t *tab = malloc(sizeof(uint16_t) * ICDF_SIZE);
    if (cum == NULL || tab == NULL) {
        free(cum);
        free(tab);
        return NULL;
    }
    const double kev_per_bin = 40.96 / (double)bins; /* 10 eV per bin at 4096 bins */
    double acc = 0.0;
    for (uint32_t b = 0; b < bins; b++) {
        acc += model_integral(chan, b * kev_per_bin, (b + 1) * kev_per_bin);
        cum[b] = acc;
    }
    uint32_t b = 0;
    for (uint32_t i = 0; i < ICDF_SIZE; i++) {
        double u = ((double)i + 0.5) / (double)ICDF_SIZE * acc;
        while (b + 1 < bins && cum[b] < u)
            b++;
        tab[i] = (uint16_t)b;
    }
    free(cum);
    return tab;
}

static const uint16_t *get_icdf(System *s, int chan)
{
    if (s->icdf[chan] == NULL)
        s->icdf[chan] = build_icdf(chan, s->bins);
    return s->icdf[chan];
}

static void free_icdf(System *s)
{
    for (int c = 0; c < s->nchan; c++) {
        free(s->icdf[c]);
        s->icdf[c] = NULL;
    }
}

/* ------------------------------------------------------- snapshots */

static void snap_unref(Snap *sn)
{
    if (sn != NULL && --sn->refs == 0)
        free(sn);
}

static void chan_rate_params(ChanParams *cp, double rate)
{
    double p = rate * PILEUP_TAU_S;
    if (p > PILEUP_MAX)
        p = PILEUP_MAX;
    /* dead ticks per processed event, on average */
    double tau = ((EVENT_WIDTH + 1) * (1.0 + p) + (double)RESET_COST / RESET_EVERY) / TICKS_PER_S;
    cp->rate = rate;
    cp->p_pile = p;
    cp->mean_per_tick = rate / (1.0 + rate * tau) / TICKS_PER_S;
}

static Snap *snap_new(System *s)
{
    Snap *sn = malloc(sizeof(Snap) + sizeof(ChanParams) * (size_t)s->nchan);
    if (sn == NULL)
        return NULL;
    sn->refs = 1;
    sn->seed = s->seed;
    sn->run_no = s->run_no;
    sn->bins = s->bins;
    sn->nchan = s->nchan;
    for (int c = 0; c < s->nchan; c++) {
        ChanParams *cp = &sn->ch[c];
        chan_rate_params(cp, s->rate[c]);
        cp->thres = s->thres[c];
        memcpy(cp->win, s->win[c], sizeof cp->win);
    }
    return sn;
}

/* -------------------------------------------------------- frame memory */

static void mask_range(uint64_t mask[MASK_WORDS], int first, int num)
{
    memset(mask, 0, sizeof(uint64_t) * MASK_WORDS);
    for (int c = first; c < first + num; c++)
        mask[c >> 6] |= 1ULL << (c & 63);
}

static inline bool mask_has(const uint64_t mask[MASK_WORDS], int c)
{
    return (mask[c >> 6] >> (c & 63)) & 1u;
}

/* Removes channels `clear` from every layer of the slot; drops empty layers. */
static void slot_clear(Slot *sl, const uint64_t clear[MASK_WORDS])
{
    if (sl->nlayers == 0)
        return;
    int keep = 0;
    for (int i = 0; i < sl->nlayers; i++) {
        Layer *L = &sl->layer[i];
        bool any = false;
        for (int w = 0; w < MASK_WORDS; w++) {
            L->mask[w] &= ~clear[w];
            any |= L->mask[w] != 0;
        }
        if (any) {
            if (keep != i)
                sl->layer[keep] = *L;
            keep++;
        } else {
            snap_unref(L->snap);
        }
    }
    sl->nlayers = (uint8_t)keep;
}

/* Empties channels `clear` of slot t (and releases it if `release`); the
 * compact occupancy array keeps untouched slots from being read at all. */
static void slot_empty(System *s, int64_t t, const uint64_t clear[MASK_WORDS], bool release)
{
    if (!s->occupied[t])
        return;
    Slot *sl = &s->slots[t];
    slot_clear(sl, clear);
    if (release)
        sl->unacked = 0;
    s->occupied[t] = sl->nlayers != 0 || sl->unacked;
}

static void discard_memory(System *s)
{
    uint64_t all[MASK_WORDS];
    memset(all, 0xFF, sizeof all);
    for (int64_t t = 0; t < s->mem; t++)
        slot_empty(s, t, all, true);
}

/* Generates the events of one channel of one layer.  hist (may be NULL)
 * receives bins [eng, eng + num_eng); sc accumulates the 9 scalers. */
static void gen_layer(System *s, const Layer *L, int chan, uint32_t *hist, uint32_t eng,
                      uint32_t num_eng, uint64_t sc[XSP3_NUM_SCALERS])
{
    const Snap *sn = L->snap;
    const ChanParams *cp = &sn->ch[chan];
    uint64_t rng = mix64(sn->seed ^ 0x6A09E667F3BCC909ULL) ^
                   mix64(sn->run_no * 0xBB67AE8584CAA73BULL + 0x3C6EF372FE94F82BULL) ^
                   mix64(L->frame * 0xA54FF53A5F1D36F1ULL + (uint64_t)chan * 0x510E527FADE682D1ULL + 1u);
    uint64_t n = rng_poisson(&rng, cp->mean_per_tick * (double)L->live);
    uint64_t phase = rng_next(&rng) % RESET_EVERY;
    double budget = DEAD_BUDGET * (double)L->live;
    uint64_t pile, resets;
    for (;;) {
        pile = (uint64_t)((double)n * cp->p_pile + 0.5);
        resets = (n + phase) / RESET_EVERY;
        double dead = (double)(n + pile) * (EVENT_WIDTH + 1) + (double)resets * RESET_COST;
        if (n == 0 || dead <= budget)
            break;
        double per = (EVENT_WIDTH + 1) * (1.0 + cp->p_pile) + (double)RESET_COST / RESET_EVERY;
        uint64_t cap = (uint64_t)(budget / per);
        n = cap < n ? cap : n - 1;
    }
    if (n == 0) {
        pile = 0;
        resets = 0;
    }
    const uint16_t *tab = get_icdf(s, chan);
    const uint32_t thr = cp->thres;
    const uint32_t w0l = cp->win[0][0], w0h = cp->win[0][1], w1l = cp->win[1][0], w1h = cp->win[1][1];
    uint64_t good = 0, in0 = 0, in1 = 0;
    if (tab != NULL) {
        for (uint64_t i = 0; i < n; i++) {
            uint32_t b = tab[rng_next(&rng) >> 48];
            if (b < thr)
                continue;
            good++;
            in0 += (b >= w0l) & (b <= w0h);
            in1 += (b >= w1l) & (b <= w1h);
            if (hist != NULL) {
                uint32_t off = b - eng;
                if (off < num_eng)
                    hist[off]++;
            }
        }
    }
    sc[XSP3_SCALER_TIME] += L->live;
    sc[XSP3_SCALER_RESET_TICKS] += resets * RESET_COST;
    sc[XSP3_SCALER_RESET_COUNT] += resets;
    sc[XSP3_SCALER_ALL_EVENT] += n + pile;
    sc[XSP3_SCALER_ALL_GOOD] += good;
    sc[XSP3_SCALER_IN_WINDOW0] += in0;
    sc[XSP3_SCALER_IN_WINDOW1] += in1;
    sc[XSP3_SCALER_PILEUP] += pile;
    sc[XSP3_SCALER_TOTAL_TICKS] += L->live;
}

/* Fills hist (NULL allowed, num_eng entries) and the 9 scalers of one slot/channel. */
static void gen_slot_chan(System *s, const Slot *sl, int chan, uint32_t *hist, uint32_t eng,
                          uint32_t num_eng, uint32_t out[XSP3_NUM_SCALERS])
{
    uint64_t sc[XSP3_NUM_SCALERS] = {0};
    if (hist != NULL)
        memset(hist, 0, sizeof(uint32_t) * num_eng);
    for (int i = 0; i < sl->nlayers; i++)
        if (mask_has(sl->layer[i].mask, chan))
            gen_layer(s, &sl->layer[i], chan, hist, eng, num_eng, sc);
    for (int k = 0; k < XSP3_NUM_SCALERS; k++)
        out[k] = sc[k] > UINT32_MAX ? UINT32_MAX : (uint32_t)sc[k];
}

static double dtc_factor(const uint32_t sc[XSP3_NUM_SCALERS])
{
    double ticks = sc[XSP3_SCALER_TIME];
    double dead = (double)sc[XSP3_SCALER_ALL_EVENT] * (EVENT_WIDTH + 1) + sc[XSP3_SCALER_RESET_TICKS];
    if (ticks <= 0.0 || dead <= 0.0 || dead >= ticks)
        return 1.0;
    return ticks / (ticks - dead);
}

/* ---------------------------------------------------------- run control */

static void stop_run(System *s)
{
    s->state = ST_IDLE;
    s->sched_active = false;
    s->gate_open = false;
    pthread_cond_signal(&s->cond);
}

/* Completes the next frame of the run with `live` ticks.  False when the run
 * is over (finished, stopped, or stopped now by an overrun). */
static bool complete_frame(System *s, uint64_t live)
{
    if (s->state == ST_IDLE || s->completed >= s->run_len)
        return false;
    int64_t k = s->completed;
    int64_t slot_no = k % s->mem;
    Slot *sl = &s->slots[slot_no];
    if (s->circular && sl->unacked && sl->unacked_run == s->run_no) {
        s->errflags |= XSP3_ERR_FLAG_OVERRUN;
        stop_run(s);
        set_error(XSP3_ERROR, "xsp3_scaler_check_progress_details",
                  "circular buffer overrun: frame %lld needs slot %lld, which still holds "
                  "unacknowledged frame %lld; run stopped after %lld frames",
                  (long long)k, (long long)slot_no, (long long)(k - s->mem), (long long)k);
        return false;
    }
    if (sl->nlayers < MAX_LAYERS) {
        Layer *L = &sl->layer[sl->nlayers++];
        L->snap = s->snap;
        s->snap->refs++;
        L->frame = (uint64_t)k;
        L->live = live;
        mask_range(L->mask, 0, s->nchan);
    } else {
        Layer *L = &sl->layer[MAX_LAYERS - 1];
        L->live += live;
        uint64_t all[MASK_WORDS];
        mask_range(all, 0, s->nchan);
        for (int w = 0; w < MASK_WORDS; w++)
            L->mask[w] |= all[w];
    }
    if (s->circular) {
        sl->unacked = 1;
        sl->unacked_run = s->run_no;
    }
    s->occupied[slot_no] = 1;
    s->completed++;
    if (s->completed >= s->run_len) {
        stop_run(s);
        return false;
    }
    return true;
}

/* Completes every internally timed frame whose end time has passed. */
static void advance(System *s, int64_t now)
{
    if (!s->sched_active || s->state == ST_IDLE)
        return;
    int64_t due = now < s->sched_t0 ? 0 : (now - s->sched_t0) / s->sched_period;
    if (due > s->sched_total)
        due = s->sched_total;
    while (s->sched_done < due) {
        s->sched_done++;
        if (!complete_frame(s, s->run_col))
            return;
    }
    if (s->sched_done >= s->sched_total)
        s->sched_active = false;
}

static int64_t frames_unscheduled(System *s)
{
    int64_t pending = s->sched_active ? s->sched_total - s->sched_done : 0;
    int64_t left = s->run_len - s->completed - pending;
    return left < 0 ? 0 : left;
}

/* Queues n timed frames behind those already scheduled. */
static void schedule_frames(System *s, int64_t n, int64_t now)
{
    advance(s, now);
    if (s->state == ST_IDLE)
        return;
    int64_t left = frames_unscheduled(s);
    if (n > left)
        n = left;
    if (n <= 0)
        return;
    if (s->sched_active) {
        s->sched_total += n;
    } else {
        static const int64_t gap_ns[4] = {25, 200, 500, 1000};
        s->sched_active = true;
        s->sched_t0 = now;
        s->sched_period = ((int64_t)s->run_col * 25 + 1) / 2 + gap_ns[s->gap_mode & 3];
        s->sched_total = n;
        s->sched_done = 0;
    }
    s->state = ST_RUNNING;
    pthread_cond_signal(&s->cond);
}

/* Lets the timed frame in progress finish and drops the queued ones. */
static void truncate_schedule(System *s, int64_t now)
{
    advance(s, now);
    if (!s->sched_active)
        return;
    int64_t current = now < s->sched_t0 ? 0 : (now - s->sched_t0) / s->sched_period;
    if (current + 1 < s->sched_total)
        s->sched_total = current + 1;
    if (s->sched_done >= s->sched_total)
        s->sched_active = false;
    pthread_cond_signal(&s->cond);
}

static void *generator_main(void *arg)
{
    System *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->quit) {
        int64_t now = mono_ns();
        advance(s, now);
        if (s->quit)
            break;
        if (s->sched_active && s->state != ST_IDLE) {
            int64_t due = s->sched_t0 + (s->sched_done + 1) * s->sched_period;
            if (due < now + MIN_SLEEP_NS)
                due = now + MIN_SLEEP_NS;
            struct timespec ts = {.tv_sec = due / 1000000000LL, .tv_nsec = due % 1000000000LL};
            pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        } else {
            pthread_cond_wait(&s->cond, &s->lock);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Starts a new run in the armed state; returns an XSP3 code. */
static int new_run(System *s, const char *fn)
{
    bool circular = (s->run_flags & XSP3_RUN_FLAGS_CIRCULAR_BUFFER) != 0;
    int64_t len = s->itfg_set ? s->itfg_frames : (circular ? INT64_MAX : (int64_t)s->mem);
    if (!circular && len > s->mem)
        return set_error(XSP3_RANGE_CHECK, fn,
                         "run of %lld frames exceeds frame memory %d without circular buffer mode",
                         (long long)len, s->mem);
    s->run_no++;
    Snap *sn = snap_new(s);
    if (sn == NULL) {
        s->run_no--;
        return set_error(XSP3_OUT_OF_MEMORY, fn, "cannot allocate run parameters");
    }
    snap_unref(s->snap);
    s->snap = sn;
    s->state = ST_ARMED;
    s->source = (int)(s->timeA[0] & XSP3_GTIMA_SRC_MASK);
    s->trig = s->trig_mode;
    s->circular = circular;
    s->run_col = s->itfg_set ? s->col_time : DEFAULT_COL_TIME;
    s->run_len = len;
    s->completed = 0;
    s->errflags = 0;
    s->first_done = false;
    s->last_ns = mono_ns();
    s->gate_open = false;
    s->sched_active = false;
    return XSP3_OK;
}

/* The "go" part of start: internal bursts begin, software timing starts its clock. */
static void go(System *s)
{
    if (s->state != ST_ARMED)
        return;
    int64_t now = mono_ns();
    s->state = ST_RUNNING;
    s->last_ns = now;
    if (s->source == XSP3_GTIMA_SRC_INTERNAL && s->trig == XSP3_ITFG_TRIG_MODE_BURST)
        schedule_frames(s, s->run_len, now);
}

/* ---------------------------------------------------------- lifecycle */

static void free_system(System *s)
{
    if (s->slots != NULL && s->occupied != NULL)
        discard_memory(s);
    snap_unref(s->snap);
    if (s->icdf != NULL)
        free_icdf(s);
    free(s->icdf);
    free(s->slots);
    free(s->occupied);
    free(s->rate);
    free(s->thres);
    free(s->win);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int xsp3_config(int ncards, int num_tf, char *baseIPaddress, int basePort, char *baseMACaddress,
                int nchan, int createmodule, char *modname, int debug, int card_index)
{
    FAULT_POINT();
    (void)basePort;
    (void)baseMACaddress;
    (void)createmodule;
    (void)modname;
    (void)debug;
    (void)card_index;
    if (ncards < 1 || ncards > MAX_CARDS)
        return FAIL(XSP3_RANGE_CHECK, "ncards %d out of range 1..%d", ncards, MAX_CARDS);
    if (num_tf < 1)
        return FAIL(XSP3_RANGE_CHECK, "num_tf %d must be >= 1", num_tf);
    if (nchan < 1 || nchan > ncards * CHAN_PER_CARD)
        return FAIL(XSP3_RANGE_CHECK, "nchan %d out of range 1..%d", nchan, ncards * CHAN_PER_CARD);
    if (address_refused(baseIPaddress))
        return FAIL(XSP3_ERR_DEV_NOT_FOUND, "no Xspress3 answered at %.64s", baseIPaddress);

    System *s = calloc(1, sizeof *s);
    if (s == NULL)
        return FAIL(XSP3_OUT_OF_MEMORY, "cannot allocate system");
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->ncards = ncards;
    s->nchan = nchan;
    s->mem = num_tf;
    s->nbits = DEFAULT_NBITS;
    s->bins = 1u << DEFAULT_NBITS;
    s->run_flags = XSP3_RUN_FLAGS_SCALERS | XSP3_RUN_FLAGS_HIST;
    s->col_time = DEFAULT_COL_TIME;
    s->gap_mode = XSP3_ITFG_GAP_MODE_1US;
    s->seed = 1;
    s->timeA[0] = XSP3_GTIMA_SRC_INTERNAL;
    s->rate = calloc((size_t)nchan, sizeof *s->rate);
    s->thres = calloc((size_t)nchan, sizeof *s->thres);
    s->win = calloc((size_t)nchan, sizeof *s->win);
    s->icdf = calloc((size_t)nchan, sizeof *s->icdf);
    s->slots = calloc((size_t)num_tf, sizeof *s->slots); /* pages are committed on first use */
    s->occupied = calloc((size_t)num_tf, 1);
    if (!s->rate || !s->thres || !s->win || !s->icdf || !s->slots || !s->occupied) {
        free_system(s);
        return FAIL(XSP3_OUT_OF_MEMORY, "cannot allocate frame memory of %d frames x %d channels",
                    num_tf, nchan);
    }
    for (int c = 0; c < nchan; c++) {
        s->rate[c] = DEFAULT_RATE;
        for (int w = 0; w < 2; w++) {
            s->win[c][w][0] = 0;
            s->win[c][w][1] = s->bins - 1;
        }
    }
    s->snap = snap_new(s);
    if (s->snap == NULL) {
        free_system(s);
        return FAIL(XSP3_OUT_OF_MEMORY, "cannot allocate run parameters");
    }

    pthread_rwlock_wrlock(&g_table_lock);
    int path = -1;
    for (int i = 0; i < MAX_SYSTEMS; i++) {
        if (g_sys[i] == NULL) {
            path = i;
            break;
        }
    }
    if (path < 0) {
        pthread_rwlock_unlock(&g_table_lock);
        free_system(s);
        return FAIL(XSP3_ERROR, "too many open systems (max %d)", MAX_SYSTEMS);
    }
    if (pthread_create(&s->thread, NULL, generator_main, s) != 0) {
        pthread_rwlock_unlock(&g_table_lock);
        free_system(s);
        return FAIL(XSP3_OUT_OF_MEMORY, "cannot start the frame generator thread");
    }
    s->thread_started = true;
    g_sys[path] = s;
    pthread_rwlock_unlock(&g_table_lock);
    return path;
}

int xsp3_close(int path)
{
    FAULT_POINT();
    pthread_rwlock_wrlock(&g_table_lock);
    if (path < 0 || path >= MAX_SYSTEMS || g_sys[path] == NULL) {
        pthread_rwlock_unlock(&g_table_lock);
        return FAIL(XSP3_INVALID_PATH, "path %d is not open", path);
    }
    System *s = g_sys[path];
    g_sys[path] = NULL;
    pthread_rwlock_unlock(&g_table_lock);
    pthread_mutex_lock(&s->lock);
    s->quit = true;
    stop_run(s);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    free_system(s);
    return XSP3_OK;
}

int xsp3_get_num_chan(int path)
{
    ENTER(path);
    LEAVE(s->nchan);
}

int xsp3_get_num_cards(int path)
{
    ENTER(path);
    LEAVE(s->ncards);
}

int xsp3_get_bins_per_mca(int path)
{
    ENTER(path);
    LEAVE((int)s->bins);
}

int xsp3_get_num_tf(int path)
{
    ENTER(path);
    LEAVE(s->mem);
}

int xsp3_get_generation(int path, int card)
{
    ENTER(path);
    CHECK_CARD(card, false);
    LEAVE(3);
}

int xsp3_has_itfg(int path, int card)
{
    ENTER(path);
    CHECK_CARD(card, false);
    LEAVE(1);
}

int xsp3_clocks_setup(int path, int card, int clk_src, int flags, int tp_type)
{
    ENTER(path);
    (void)tp_type;
    CHECK_CARD(card, true);
    if (clk_src < XSP3_CLK_SRC_INT || clk_src > XSP3_CLK_SRC_EXT)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "clock source %d out of range 0..2", clk_src));
    if (flags & ~(XSP3_CLK_FLAGS_MASTER | XSP3_CLK_FLAGS_NO_DITHER))
        LEAVE(FAIL(XSP3_RANGE_CHECK, "unknown clock flags 0x%x", (unsigned)flags));
    LEAVE(XSP3_OK);
}

/* -------------------------------------------------------------- settings */

static int settings_path(char *out, size_t n, const char *dir)
{
    int len = snprintf(out, n, "%s/%s", dir, SETTINGS_FILE);
    return (len < 0 || (size_t)len >= n) ? -1 : 0;
}

int xsp3_save_settings(int path, char *dir_name)
{
    ENTER(path);
    if (dir_name == NULL)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "directory name is NULL"));
    struct stat st;
    if (stat(dir_name, &st) != 0 || !S_ISDIR(st.st_mode))
        LEAVE(FAIL(XSP3_FILE_WRITE_FAILED, "directory '%.200s' does not exist", dir_name));
    char final[4096], tmp[4200];
    if (settings_path(final, sizeof final, dir_name) != 0)
        LEAVE(FAIL(XSP3_FILE_WRITE_FAILED, "directory name too long"));
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", final);
    int fd = mkstemp(tmp);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
    if (f == NULL) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        LEAVE(FAIL(XSP3_FILE_WRITE_FAILED, "cannot write in '%.200s': %s", dir_name, strerror(e)));
    }
    fprintf(f, "%s\nchannels %d\nbins %u\n", SETTINGS_MAGIC, s->nchan, s->bins);
    for (int c = 0; c < s->nchan; c++)
        fprintf(f, "chan %d thres %u win0 %u %u win1 %u %u\n", c, s->thres[c], s->win[c][0][0],
                s->win[c][0][1], s->win[c][1][0], s->win[c][1][1]);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        unlink(tmp);
        LEAVE(FAIL(XSP3_FILE_WRITE_FAILED, "error writing '%.200s'", tmp));
    }
    if (rename(tmp, final) != 0) {
        int e = errno;
        unlink(tmp);
        LEAVE(FAIL(XSP3_FILE_RENAME_FAILED, "cannot rename to '%.200s': %s", final, strerror(e)));
    }
    LEAVE(XSP3_OK);
}

int xsp3_restore_settings(int path, char *dir_name, int force_mismatch)
{
    ENTER(path);
    if (dir_name == NULL)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "directory name is NULL"));
    char fname[4096];
    if (settings_path(fname, sizeof fname, dir_name) != 0)
        LEAVE(FAIL(XSP3_CANNOT_OPEN_FILE, "directory name too long"));
    FILE *f = fopen(fname, "r");
    if (f == NULL)
        LEAVE(FAIL(XSP3_CANNOT_OPEN_FILE, "cannot open '%.200s': %s", fname, strerror(errno)));
    uint32_t (*win)[2][2] = calloc((size_t)s->nchan, sizeof *win);
    uint32_t *thres = calloc((size_t)s->nchan, sizeof *thres);
    bool *seen = calloc((size_t)s->nchan, sizeof *seen);
    int rc = XSP3_OK;
    char line[512];
    int file_chan = -1;
    unsigned file_bins = 0;
    if (win == NULL || thres == NULL || seen == NULL) {
        rc = FAIL(XSP3_OUT_OF_MEMORY, "cannot allocate");
        goto done;
    }
    if (fgets(line, sizeof line, f) == NULL || strncmp(line, SETTINGS_MAGIC, strlen(SETTINGS_MAGIC)) != 0) {
        rc = FAIL(XSP3_FILE_READ_FAILED, "'%.200s' is not a simulator settings file", fname);
        goto done;
    }
    if (fgets(line, sizeof line, f) == NULL || sscanf(line, "channels %d", &file_chan) != 1 ||
        fgets(line, sizeof line, f) == NULL || sscanf(line, "bins %u", &file_bins) != 1) {
        rc = FAIL(XSP3_FILE_READ_FAILED, "'%.200s': malformed header", fname);
        goto done;
    }
    if (file_chan != s->nchan && !force_mismatch) {
        rc = FAIL(XSP3_FILE_READ_FAILED, "'%.200s' holds %d channels, system has %d (use force_mismatch)",
                  fname, file_chan, s->nchan);
        goto done;
    }
    for (int lineno = 4; fgets(line, sizeof line, f) != NULL; lineno++) {
        int c;
        unsigned t, a, b, d, e;
        char extra;
        if (line[0] == '\n' || line[0] == '#')
            continue;
        if (sscanf(line, "chan %d thres %u win0 %u %u win1 %u %u %c", &c, &t, &a, &b, &d, &e, &extra) != 6) {
            rc = FAIL(XSP3_FILE_READ_FAILED, "'%.200s' line %d: malformed", fname, lineno);
            goto done;
        }
        if (c < 0 || c >= file_chan || a > b || d > e) {
            rc = FAIL(XSP3_FILE_READ_FAILED, "'%.200s' line %d: values out of range", fname, lineno);
            goto done;
        }
        if (c >= s->nchan)
            continue;
        if (b >= s->bins || e >= s->bins || t >= s->bins) {
            if (!force_mismatch) {
                rc = FAIL(XSP3_FILE_READ_FAILED, "'%.200s' line %d: values exceed %u bins", fname, lineno, s->bins);
                goto done;
            }
            t = t >= s->bins ? s->bins - 1 : t;
            a = a >= s->bins ? s->bins - 1 : a;
            b = b >= s->bins ? s->bins - 1 : b;
            d = d >= s->bins ? s->bins - 1 : d;
            e = e >= s->bins ? s->bins - 1 : e;
        }
        thres[c] = t;
        win[c][0][0] = a;
        win[c][0][1] = b;
        win[c][1][0] = d;
        win[c][1][1] = e;
        seen[c] = true;
    }
    for (int c = 0; c < s->nchan && c < file_chan; c++) {
        if (!seen[c]) {
            rc = FAIL(XSP3_FILE_READ_FAILED, "'%.200s': channel %d missing", fname, c);
            goto done;
        }
    }
    for (int c = 0; c < s->nchan; c++) {
        if (seen[c]) {
            s->thres[c] = thres[c];
            memcpy(s->win[c], win[c], sizeof win[c]);
        }
    }
done:
    fclose(f);
    free(win);
    free(thres);
    free(seen);
    LEAVE(rc);
}

/* ----------------------------------------------------------- run setup */

int xsp3_format_run(int path, int chan, int aux1_mode, int res_thres, int aux2_cont, int disables,
                    int aux2_mode, int nbits_eng)
{
    ENTER(path);
    (void)aux1_mode;
    (void)res_thres;
    (void)aux2_cont;
    (void)disables;
    (void)aux2_mode;
    if (chan < -1 || chan >= s->nchan)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "channel %d out of range 0..%d (or -1)", chan, s->nchan - 1));
    if (nbits_eng < 1 || nbits_eng > 12)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "nbits_eng %d out of range 1..12", nbits_eng));
    if (nbits_eng == s->nbits)
        LEAVE(XSP3_OK);
    advance(s, mono_ns());
    if (s->state != ST_IDLE)
        LEAVE(FAIL(XSP3_ERROR, "cannot change the bin count while a run is active"));
    uint32_t old = s->bins, bins = 1u << nbits_eng;
    discard_memory(s);
    free_icdf(s);
    s->nbits = nbits_eng;
    s->bins = bins;
    for (int c = 0; c < s->nchan; c++) {
        for (int w = 0; w < 2; w++) {
            if (s->win[c][w][1] == old - 1 || s->win[c][w][1] >= bins)
                s->win[c][w][1] = bins - 1;
            if (s->win[c][w][0] >= bins)
                s->win[c][w][0] = bins - 1;
        }
        if (s->thres[c] >= bins)
            s->thres[c] = bins - 1;
    }
    LEAVE(XSP3_OK);
}

int xsp3_set_run_flags(int path, int flags)
{
    ENTER(path);
    s->run_flags = flags;
    LEAVE(XSP3_OK);
}

int xsp3_set_glob_timeA(int path, int card, uint32_t time)
{
    ENTER(path);
    CHECK_CARD(card, true);
    for (int c = 0; c < s->ncards; c++)
        if (card == -1 || card == c)
            s->timeA[c] = time;
    LEAVE(XSP3_OK);
}

int xsp3_set_glob_timeFixed(int path, int card, uint32_t time)
{
    ENTER(path);
    CHECK_CARD(card, true);
    for (int c = 0; c < s->ncards; c++)
        if (card == -1 || card == c)
            s->timeFixed[c] = time;
    LEAVE(XSP3_OK);
}

static int itfg_common(System *s, const char *fn, int card, int num_tf, uint32_t col_time,
                      int trig_mode, int gap_mode)
{
    int rc = check_card(s, card, true, fn);
    if (rc != XSP3_OK)
        return rc;
    if (num_tf < 1)
        return set_error(XSP3_RANGE_CHECK, fn, "num_tf %d must be >= 1", num_tf);
    if (col_time < 1)
        return set_error(XSP3_RANGE_CHECK, fn, "col_time must be >= 1 tick");
    if (trig_mode != 0 && trig_mode != 1 && trig_mode != 2 && trig_mode != 5 && trig_mode != 6)
        return set_error(XSP3_RANGE_CHECK, fn, "trig_mode %d not one of 0,1,2,5,6", trig_mode);
    if (gap_mode < 0 || gap_mode > 3)
        return set_error(XSP3_RANGE_CHECK, fn, "gap_mode %d out of range 0..3", gap_mode);
    if (!(s->run_flags & XSP3_RUN_FLAGS_CIRCULAR_BUFFER) && num_tf > s->mem)
        return set_error(XSP3_RANGE_CHECK, fn,
                         "num_tf %d exceeds frame memory %d (set circular buffer mode for longer runs)",
                         num_tf, s->mem);
    s->itfg_set = true;
    s->itfg_frames = num_tf;
    s->col_time = col_time;
    s->trig_mode = trig_mode;
    s->gap_mode = gap_mode;
    return XSP3_OK;
}

int xsp3_itfg_setup(int path, int card, int num_tf, uint32_t col_time, int trig_mode, int gap_mode)
{
    ENTER(path);
    LEAVE(itfg_common(s, __func__, card, num_tf, col_time, trig_mode, gap_mode));
}

int xsp3_itfg_setup2(int path, int card, int num_tf, uint32_t col_time, int trig_mode, int gap_mode,
                     int acq_in_pause, int marker_period, int marker_frame)
{
    ENTER(path);
    int rc = itfg_common(s, __func__, card, num_tf, col_time, trig_mode, gap_mode);
    if (rc == XSP3_OK) {
        s->acq_in_pause = acq_in_pause;
        s->marker_period = marker_period;
        s->marker_frame = marker_frame;
    }
    LEAVE(rc);
}

int xsp3_itfg_start(int path, int card)
{
    ENTER(path);
    CHECK_CARD(card, true);
    go(s);
    LEAVE(XSP3_OK);
}

int xsp3_itfg_stop(int path, int card)
{
    ENTER(path);
    CHECK_CARD(card, true);
    if (s->source == XSP3_GTIMA_SRC_INTERNAL)
        truncate_schedule(s, mono_ns());
    LEAVE(XSP3_OK);
}

/* ----------------------------------------------------------- acquisition */

int xsp3_histogram_clear(int path, int first_chan, int num_chan, int first_frame, int num_frames)
{
    ENTER(path);
    if (first_chan < 0 || num_chan < 0 || (int64_t)first_chan + num_chan > s->nchan)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "channels %d+%d out of range 0..%d", first_chan, num_chan, s->nchan - 1));
    if (first_frame < 0 || num_frames < 0 || (int64_t)first_frame + num_frames > s->mem)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "frames %d+%d exceed frame memory %d", first_frame, num_frames, s->mem));
    uint64_t clear[MASK_WORDS];
    mask_range(clear, first_chan, num_chan);
    bool all = first_chan == 0 && num_chan == s->nchan;
    for (int t = first_frame; t < first_frame + num_frames; t++)
        slot_empty(s, t, clear, all);
    LEAVE(XSP3_OK);
}

int xsp3_histogram_arm(int path, int card)
{
    ENTER(path);
    CHECK_CARD(card, true);
    advance(s, mono_ns());
    if (s->state != ST_IDLE)
        LEAVE(XSP3_OK);
    LEAVE(new_run(s, __func__));
}

int xsp3_histogram_start(int path, int card)
{
    ENTER(path);
    CHECK_CARD(card, true);
    advance(s, mono_ns());
    if (s->state == ST_IDLE) {
        int rc = new_run(s, __func__);
        if (rc != XSP3_OK)
            LEAVE(rc);
    }
    go(s);
    LEAVE(XSP3_OK);
}

int xsp3_histogram_continue(int path, int card)
{
    ENTER(path);
    CHECK_CARD(card, true);
    int64_t now = mono_ns();
    advance(s, now);
    if (s->state == ST_IDLE || (card != -1 && card != 0))
        LEAVE(XSP3_OK);
    if (s->source == XSP3_GTIMA_SRC_SOFTWARE) {
        s->state = ST_RUNNING;
        uint64_t live = ns_to_ticks(now - s->last_ns);
        s->last_ns = now;
        complete_frame(s, live);
    } else if (s->source == XSP3_GTIMA_SRC_INTERNAL) {
        switch (s->trig) {
        case XSP3_ITFG_TRIG_MODE_SOFTWARE:
            schedule_frames(s, 1, now);
            break;
        case XSP3_ITFG_TRIG_MODE_SOFTWARE_ONLY_FIRST:
            if (!s->first_done) {
                s->first_done = true;
                schedule_frames(s, s->run_len, now);
            }
            break;
        case XSP3_ITFG_TRIG_MODE_BURST:
            /* resumes a paused (or not yet started) burst */
            if (!s->sched_active)
                schedule_frames(s, s->run_len, now);
            break;
        default:
            break;
        }
    }
    LEAVE(XSP3_OK);
}

int xsp3_histogram_pause(int path, int card)
{
    ENTER(path);
    CHECK_CARD(card, true);
    if (s->state != ST_IDLE && (card == -1 || card == 0) && s->source == XSP3_GTIMA_SRC_INTERNAL)
        truncate_schedule(s, mono_ns());
    LEAVE(XSP3_OK);
}

int xsp3_histogram_stop(int path, int card)
{
    ENTER(path);
    CHECK_CARD(card, true);
    advance(s, mono_ns());
    stop_run(s);
    LEAVE(XSP3_OK);
}

int xsp3_histogram_is_any_busy(int path)
{
    ENTER(path);
    advance(s, mono_ns());
    LEAVE(s->state != ST_IDLE ? 1 : 0);
}

int xsp3_scaler_check_progress(int path)
{
    ENTER(path);
    advance(s, mono_ns());
    LEAVE(s->completed > INT_MAX ? INT_MAX : (int)s->completed);
}

int64_t xsp3_scaler_check_progress_details(int path, Xsp3ErrFlag *flags, int quiet, int64_t *furthest_frame)
{
    ENTER(path);
    (void)quiet;
    advance(s, mono_ns());
    if (flags != NULL)
        *flags = s->errflags;
    if (furthest_frame != NULL)
        *furthest_frame = s->completed;
    LEAVE(s->completed);
}

static int check_region(System *s, const char *fn, unsigned eng, unsigned aux, unsigned chan,
                        unsigned tf, unsigned num_eng, unsigned num_aux, unsigned num_chan, unsigned num_tf)
{
    if (aux != 0 || num_aux != 1)
        return set_error(XSP3_RANGE_CHECK, fn, "aux %u+%u: only aux 0, num_aux 1 is supported", aux, num_aux);
    if ((uint64_t)eng + num_eng > s->bins)
        return set_error(XSP3_RANGE_CHECK, fn, "bins %u+%u out of range 0..%u", eng, num_eng, s->bins - 1);
    if ((uint64_t)chan + num_chan > (uint64_t)s->nchan)
        return set_error(XSP3_RANGE_CHECK, fn, "channel %u+%u out of range 0..%d", chan, num_chan, s->nchan - 1);
    if ((uint64_t)tf + num_tf > (uint64_t)s->mem)
        return set_error(XSP3_RANGE_CHECK, fn, "frame %u+%u out of range 0..%d", tf, num_tf, s->mem - 1);
    return XSP3_OK;
}

int xsp3_histogram_read4d(int path, uint32_t *buffer, unsigned eng, unsigned aux, unsigned chan,
                          unsigned tf, unsigned num_eng, unsigned num_aux, unsigned num_chan,
                          unsigned num_tf)
{
    ENTER(path);
    if (buffer == NULL)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "buffer is NULL"));
    int rc = check_region(s, __func__, eng, aux, chan, tf, num_eng, num_aux, num_chan, num_tf);
    if (rc != XSP3_OK)
        LEAVE(rc);
    advance(s, mono_ns());
    uint32_t sc[XSP3_NUM_SCALERS];
    for (unsigned t = 0; t < num_tf; t++) {
        const Slot *sl = &s->slots[tf + t];
        for (unsigned c = 0; c < num_chan; c++) {
            uint32_t *dst = buffer + ((size_t)t * num_chan + c) * num_eng;
            if (!s->occupied[tf + t] || sl->nlayers == 0)
                memset(dst, 0, sizeof(uint32_t) * num_eng);
            else
                gen_slot_chan(s, sl, (int)(chan + c), dst, eng, num_eng, sc);
        }
    }
    LEAVE(XSP3_OK);
}

int xsp3_scaler_read(int path, uint32_t *dest, unsigned scaler, unsigned chan, unsigned t,
                     unsigned n_scalers, unsigned n_chan, unsigned dt)
{
    ENTER(path);
    if (dest == NULL)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "dest is NULL"));
    if ((uint64_t)scaler + n_scalers > XSP3_NUM_SCALERS)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "scalers %u+%u out of range 0..%d", scaler, n_scalers, XSP3_NUM_SCALERS - 1));
    if ((uint64_t)chan + n_chan > (uint64_t)s->nchan)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "channel %u+%u out of range 0..%d", chan, n_chan, s->nchan - 1));
    if ((uint64_t)t + dt > (uint64_t)s->mem)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "frame %u+%u out of range 0..%d", t, dt, s->mem - 1));
    advance(s, mono_ns());
    uint32_t sc[XSP3_NUM_SCALERS];
    for (unsigned f = 0; f < dt; f++) {
        const Slot *sl = &s->slots[t + f];
        for (unsigned c = 0; c < n_chan; c++) {
            if (!s->occupied[t + f] || sl->nlayers == 0)
                memset(sc, 0, sizeof sc);
            else
                gen_slot_chan(s, sl, (int)(chan + c), NULL, 0, 0, sc);
            memcpy(dest + ((size_t)f * n_chan + c) * n_scalers, sc + scaler, sizeof(uint32_t) * n_scalers);
        }
    }
    LEAVE(XSP3_OK);
}

int xsp3_hist_dtc_read4d(int path, double *hist_buff, double *scal_buff, unsigned eng, unsigned aux,
                         unsigned chan, unsigned tf, unsigned num_eng, unsigned num_aux,
                         unsigned num_chan, unsigned num_tf)
{
    ENTER(path);
    if (hist_buff == NULL)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "hist_buff is NULL"));
    int rc = check_region(s, __func__, eng, aux, chan, tf, num_eng, num_aux, num_chan, num_tf);
    if (rc != XSP3_OK)
        LEAVE(rc);
    uint32_t *row = malloc(sizeof(uint32_t) * (num_eng ? num_eng : 1));
    if (row == NULL)
        LEAVE(FAIL(XSP3_OUT_OF_MEMORY, "cannot allocate %u bins", num_eng));
    advance(s, mono_ns());
    uint32_t sc[XSP3_NUM_SCALERS];
    for (unsigned t = 0; t < num_tf; t++) {
        const Slot *sl = &s->slots[tf + t];
        for (unsigned c = 0; c < num_chan; c++) {
            size_t idx = (size_t)t * num_chan + c;
            double *dst = hist_buff + idx * num_eng;
            double factor = 1.0;
            if (!s->occupied[tf + t] || sl->nlayers == 0) {
                memset(row, 0, sizeof(uint32_t) * num_eng);
            } else {
                gen_slot_chan(s, sl, (int)(chan + c), row, eng, num_eng, sc);
                factor = dtc_factor(sc);
            }
            for (unsigned b = 0; b < num_eng; b++)
                dst[b] = row[b] * factor;
            if (scal_buff != NULL)
                scal_buff[idx] = factor;
        }
    }
    free(row);
    LEAVE(XSP3_OK);
}

int xsp3_histogram_circ_ack(int path, int chan, unsigned frame, unsigned num_chan, unsigned num_frames)
{
    ENTER(path);
    if (chan < 0 || (uint64_t)chan + num_chan > (uint64_t)s->nchan)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "channel %d+%u out of range 0..%d", chan, num_chan, s->nchan - 1));
    if (num_frames > (unsigned)s->mem)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "%u frames exceed frame memory %d", num_frames, s->mem));
    advance(s, mono_ns());
    uint64_t clear[MASK_WORDS];
    mask_range(clear, chan, (int)num_chan);
    unsigned slot = frame % (unsigned)s->mem;
    for (unsigned i = 0; i < num_frames; i++) {
        slot_empty(s, slot, clear, true);
        if (++slot == (unsigned)s->mem)
            slot = 0;
    }
    LEAVE(XSP3_OK);
}

/* ------------------------------------------------- windows, thresholds */

static int check_chan(System *s, const char *fn, int chan, bool allow_all)
{
    if ((chan == -1 && allow_all) || (chan >= 0 && chan < s->nchan))
        return XSP3_OK;
    return set_error(XSP3_RANGE_CHECK, fn, "channel %d out of range 0..%d%s", chan, s->nchan - 1,
                     allow_all ? " (or -1 for all)" : "");
}

#define CHECK_CHAN(chan, allow_all)                                  \
    do {                                                             \
        int ch_ = check_chan(s, __func__, (chan), (allow_all));      \
        if (ch_ != XSP3_OK)                                          \
            LEAVE(ch_);                                              \
    } while (0)

int xsp3_set_window(int path, int chan, int win, int low, int high)
{
    ENTER(path);
    CHECK_CHAN(chan, true);
    if (win != 0 && win != 1)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "window %d must be 0 or 1", win));
    if (low < 0 || low > high || (uint32_t)high >= s->bins)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "window [%d, %d] must satisfy 0 <= low <= high < %u", low, high, s->bins));
    for (int c = 0; c < s->nchan; c++) {
        if (chan == -1 || chan == c) {
            s->win[c][win][0] = (uint32_t)low;
            s->win[c][win][1] = (uint32_t)high;
        }
    }
    LEAVE(XSP3_OK);
}

int xsp3_get_window(int path, int chan, int win, uint32_t *low, uint32_t *high)
{
    ENTER(path);
    CHECK_CHAN(chan, false);
    if (win != 0 && win != 1)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "window %d must be 0 or 1", win));
    if (low == NULL || high == NULL)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "NULL output pointer"));
    *low = s->win[chan][win][0];
    *high = s->win[chan][win][1];
    LEAVE(XSP3_OK);
}

int xsp3_set_good_thres(int path, int chan, uint32_t good_thres)
{
    ENTER(path);
    CHECK_CHAN(chan, true);
    if (good_thres >= s->bins)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "threshold %u out of range 0..%u", good_thres, s->bins - 1));
    for (int c = 0; c < s->nchan; c++)
        if (chan == -1 || chan == c)
            s->thres[c] = good_thres;
    LEAVE(XSP3_OK);
}

int xsp3_get_good_thres(int path, int chan, uint32_t *good_thres)
{
    ENTER(path);
    CHECK_CHAN(chan, false);
    if (good_thres == NULL)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "NULL output pointer"));
    *good_thres = s->thres[chan];
    LEAVE(XSP3_OK);
}

int xsp3_get_dtcfactor(int path, uint32_t *scaData, double *dtcFactor, double *dtcAllEvent, int chan)
{
    ENTER(path);
    CHECK_CHAN(chan, false);
    if (scaData == NULL || dtcFactor == NULL || dtcAllEvent == NULL)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "NULL pointer argument"));
    double factor = dtc_factor(scaData);
    *dtcFactor = factor;
    *dtcAllEvent = scaData[XSP3_SCALER_ALL_EVENT] * factor;
    LEAVE(XSP3_OK);
}

/* ------------------------------------------------------ simulator only */

int xsp3sim_trigger(int path, int card, int n)
{
    ENTER_NOFAULT(path);
    CHECK_CARD(card, true);
    if (n < 0)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "pulse count %d must be >= 0", n));
    int src = s->state != ST_IDLE ? s->source : (int)(s->timeA[0] & XSP3_GTIMA_SRC_MASK);
    int trig = s->state != ST_IDLE ? s->trig : s->trig_mode;
    bool internal_hw = src == XSP3_GTIMA_SRC_INTERNAL &&
                       (trig == XSP3_ITFG_TRIG_MODE_HARDWARE || trig == XSP3_ITFG_TRIG_MODE_HARDWARE_ONLY_FIRST);
    if (src == XSP3_GTIMA_SRC_SOFTWARE || (src == XSP3_GTIMA_SRC_INTERNAL && !internal_hw))
        LEAVE(FAIL(XSP3_ERROR, "trigger pulses mean nothing with frame source %d, trig mode %d", src, trig));
    int64_t now = mono_ns();
    advance(s, now);
    if (s->state == ST_IDLE || n == 0 || (card != -1 && card != 0))
        LEAVE(XSP3_OK);
    if (internal_hw) {
        if (trig == XSP3_ITFG_TRIG_MODE_HARDWARE) {
            schedule_frames(s, n, now);
        } else if (!s->first_done) {
            s->first_done = true;
            schedule_frames(s, s->run_len, now);
        }
        LEAVE(XSP3_OK);
    }
    s->state = ST_RUNNING;
    bool veto = src == XSP3_GTIMA_SRC_TTL_VETO_ONLY || src == XSP3_GTIMA_SRC_LVDS_VETO_ONLY;
    uint64_t live;
    if (veto || s->itfg_set) {
        live = s->run_col;
    } else {
        live = ns_to_ticks(now - s->last_ns) / (uint64_t)n;
    }
    s->last_ns = now;
    for (int i = 0; i < n; i++)
        if (!complete_frame(s, live))
            break;
    LEAVE(XSP3_OK);
}

int xsp3sim_gate(int path, int card, int open)
{
    ENTER_NOFAULT(path);
    CHECK_CARD(card, true);
    int src = s->state != ST_IDLE ? s->source : (int)(s->timeA[0] & XSP3_GTIMA_SRC_MASK);
    if (src != XSP3_GTIMA_SRC_TTL_VETO_ONLY && src != XSP3_GTIMA_SRC_LVDS_VETO_ONLY)
        LEAVE(FAIL(XSP3_ERROR, "a gate means nothing with frame source %d (needs TTL/LVDS veto only)", src));
    int64_t now = mono_ns();
    if (s->state == ST_IDLE || (card != -1 && card != 0))
        LEAVE(XSP3_OK);
    s->state = ST_RUNNING;
    if (open) {
        if (!s->gate_open) {
            s->gate_open = true;
            s->gate_ns = now;
        }
    } else if (s->gate_open) {
        s->gate_open = false;
        complete_frame(s, ns_to_ticks(now - s->gate_ns));
    }
    LEAVE(XSP3_OK);
}

int xsp3sim_set_rate(int path, int chan, double counts_per_second)
{
    ENTER_NOFAULT(path);
    CHECK_CHAN(chan, true);
    if (!(counts_per_second >= 0.0) || counts_per_second > 1e9)
        LEAVE(FAIL(XSP3_RANGE_CHECK, "rate %g out of range 0..1e9 counts/s", counts_per_second));
    for (int c = 0; c < s->nchan; c++)
        if (chan == -1 || chan == c)
            s->rate[c] = counts_per_second;
    if (s->state != ST_IDLE) {
        /* frames completed from now on use the new rate; earlier ones keep theirs */
        Snap *sn = malloc(sizeof(Snap) + sizeof(ChanParams) * (size_t)s->nchan);
        if (sn == NULL)
            LEAVE(FAIL(XSP3_OUT_OF_MEMORY, "cannot allocate run parameters"));
        memcpy(sn, s->snap, sizeof(Snap) + sizeof(ChanParams) * (size_t)s->nchan);
        sn->refs = 1;
        for (int c = 0; c < s->nchan; c++)
            chan_rate_params(&sn->ch[c], s->rate[c]);
        snap_unref(s->snap);
        s->snap = sn;
    }
    LEAVE(XSP3_OK);
}

int xsp3sim_set_seed(int path, uint64_t seed)
{
    ENTER_NOFAULT(path);
    s->seed = seed;
    LEAVE(XSP3_OK);
}
