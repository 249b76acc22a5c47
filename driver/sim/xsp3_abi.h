/*
 * xsp3_abi.h - the subset of the libxspress3 C ABI that xspress3-ioc drives.
 *
 * Written for this project from the SDK facts in the project's reference notes.
 * The simulator (xsp3sim.c) includes this header so the compiler checks every
 * exported function against these prototypes; driver/_lib.py declares the same
 * prototypes for ctypes (tests/driver/test_abi_header.py cross-checks the two).
 *
 * Return values: int functions return >= 0 on success (a handle, a count or
 * XSP3_OK) and a negative XSP3_* code on failure; xsp3_get_error_message()
 * returns the text of the last failure.
 */
#ifndef XSP3_ABI_H
#define XSP3_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error codes ---- */
#define XSP3_OK                  0
#define XSP3_ERROR              -1
#define XSP3_INVALID_PATH       -2
#define XSP3_ILLEGAL_CARD       -3
#define XSP3_ILLEGAL_SUBPATH    -4
#define XSP3_INVALID_DMA_STREAM -5
#define XSP3_RANGE_CHECK        -6
#define XSP3_INVALID_SCOPE_MOD  -7
#define XSP3_OUT_OF_MEMORY      -8
#define XSP3_ERR_DEV_NOT_FOUND  -9
#define XSP3_CANNOT_OPEN_FILE   -10
#define XSP3_FILE_READ_FAILED   -11
#define XSP3_FILE_WRITE_FAILED  -12
#define XSP3_FILE_RENAME_FAILED -13
#define XSP3_LOG_FILE_MISSING   -14
#define XSP3_WOULD_BLOCK        -20

/* ---- run flags ---- */
#define XSP3_RUN_FLAGS_PLAYBACK        0x01
#define XSP3_RUN_FLAGS_SCOPE           0x02
#define XSP3_RUN_FLAGS_SCALERS         0x04
#define XSP3_RUN_FLAGS_HIST            0x08
#define XSP3_RUN_FLAGS_CIRCULAR_BUFFER 0x100

/* ---- glob_timeA word ---- */
#define XSP3_GTIMA_SRC_SOFTWARE       0
#define XSP3_GTIMA_SRC_INTERNAL       1
#define XSP3_GTIMA_SRC_SWENB_HWMARKER 2
#define XSP3_GTIMA_SRC_IDC            3
#define XSP3_GTIMA_SRC_TTL_VETO_ONLY  4
#define XSP3_GTIMA_SRC_TTL_BOTH       5
#define XSP3_GTIMA_SRC_LVDS_VETO_ONLY 6
#define XSP3_GTIMA_SRC_LVDS_BOTH      7
#define XSP3_GTIMA_SRC_MASK           7
#define XSP3_GTIMA_F0_INV             (1u << 3)
#define XSP3_GTIMA_VETO_INV           (1u << 4)
#define XSP3_GTIMA_DEBOUNCE(n)        (((uint32_t)(n) & 0xFFu) << 16)

/* ---- internal time-frame generator ---- */
#define XSP3_ITFG_TRIG_MODE_BURST                0
#define XSP3_ITFG_TRIG_MODE_SOFTWARE             1
#define XSP3_ITFG_TRIG_MODE_HARDWARE             2
#define XSP3_ITFG_TRIG_MODE_SOFTWARE_ONLY_FIRST  5
#define XSP3_ITFG_TRIG_MODE_HARDWARE_ONLY_FIRST  6
#define XSP3_ITFG_GAP_MODE_25NS  0
#define XSP3_ITFG_GAP_MODE_200NS 1
#define XSP3_ITFG_GAP_MODE_500NS 2
#define XSP3_ITFG_GAP_MODE_1US   3

/* ---- clocks ---- */
#define XSP3_CLK_SRC_INT  0
#define XSP3_CLK_SRC_XTAL 1
#define XSP3_CLK_SRC_EXT  2
#define XSP3_CLK_FLAGS_MASTER    1
#define XSP3_CLK_FLAGS_NO_DITHER 2

/* ---- scalers: 9 per channel per frame ---- */
#define XSP3_SCALER_TIME        0
#define XSP3_SCALER_RESET_TICKS 1
#define XSP3_SCALER_RESET_COUNT 2
#define XSP3_SCALER_ALL_EVENT   3
#define XSP3_SCALER_ALL_GOOD    4
#define XSP3_SCALER_IN_WINDOW0  5
#define XSP3_SCALER_IN_WINDOW1  6
#define XSP3_SCALER_PILEUP      7
#define XSP3_SCALER_TOTAL_TICKS 8
#define XSP3_NUM_SCALERS        9

/* ---- progress detail flags (xsp3_scaler_check_progress_details) ---- */
typedef int32_t Xsp3ErrFlag;
#define XSP3_ERR_FLAG_OVERRUN  0x1   /* circular buffer overwrote frames not yet acknowledged */
#define XSP3_ERR_FLAG_MISSING  0x2   /* frames missing in the sequence */

/* ---- lifecycle ---- */
int   xsp3_config(int ncards, int num_tf, char *baseIPaddress, int basePort, char *baseMACaddress,
                  int nchan, int createmodule, char *modname, int debug, int card_index);
int   xsp3_close(int path);
char *xsp3_get_error_message(void);
int   xsp3_get_num_chan(int path);
int   xsp3_get_num_cards(int path);
int   xsp3_get_bins_per_mca(int path);
int   xsp3_get_num_tf(int path);
int   xsp3_get_generation(int path, int card);
int   xsp3_has_itfg(int path, int card);
int   xsp3_clocks_setup(int path, int card, int clk_src, int flags, int tp_type);
int   xsp3_restore_settings(int path, char *dir_name, int force_mismatch);
int   xsp3_save_settings(int path, char *dir_name);
int   xsp3_format_run(int path, int chan, int aux1_mode, int res_thres, int aux2_cont,
                      int disables, int aux2_mode, int nbits_eng);
int   xsp3_set_run_flags(int path, int flags);

/* ---- timing ---- */
int   xsp3_set_glob_timeA(int path, int card, uint32_t time);
int   xsp3_set_glob_timeFixed(int path, int card, uint32_t time);
int   xsp3_itfg_setup(int path, int card, int num_tf, uint32_t col_time, int trig_mode, int gap_mode);
int   xsp3_itfg_setup2(int path, int card, int num_tf, uint32_t col_time, int trig_mode, int gap_mode,
                       int acq_in_pause, int marker_period, int marker_frame);
int   xsp3_itfg_start(int path, int card);
int   xsp3_itfg_stop(int path, int card);

/* ---- acquisition ---- */
int   xsp3_histogram_clear(int path, int first_chan, int num_chan, int first_frame, int num_frames);
int   xsp3_histogram_arm(int path, int card);
int   xsp3_histogram_start(int path, int card);
int   xsp3_histogram_continue(int path, int card);
int   xsp3_histogram_pause(int path, int card);
int   xsp3_histogram_stop(int path, int card);
int   xsp3_histogram_is_any_busy(int path);
int   xsp3_scaler_check_progress(int path);
int64_t xsp3_scaler_check_progress_details(int path, Xsp3ErrFlag *flags, int quiet, int64_t *furthest_frame);
int   xsp3_histogram_read4d(int path, uint32_t *buffer, unsigned eng, unsigned aux, unsigned chan,
                            unsigned tf, unsigned num_eng, unsigned num_aux, unsigned num_chan,
                            unsigned num_tf);
int   xsp3_scaler_read(int path, uint32_t *dest, unsigned scaler, unsigned chan, unsigned t,
                       unsigned n_scalers, unsigned n_chan, unsigned dt);
int   xsp3_hist_dtc_read4d(int path, double *hist_buff, double *scal_buff, unsigned eng, unsigned aux,
                           unsigned chan, unsigned tf, unsigned num_eng, unsigned num_aux,
                           unsigned num_chan, unsigned num_tf);
int   xsp3_histogram_circ_ack(int path, int chan, unsigned frame, unsigned num_chan, unsigned num_frames);

/* ---- windows, thresholds, deadtime ---- */
int   xsp3_set_window(int path, int chan, int win, int low, int high);
int   xsp3_get_window(int path, int chan, int win, uint32_t *low, uint32_t *high);
int   xsp3_set_good_thres(int path, int chan, uint32_t good_thres);
int   xsp3_get_good_thres(int path, int chan, uint32_t *good_thres);
int   xsp3_get_dtcfactor(int path, uint32_t *scaData, double *dtcFactor, double *dtcAllEvent, int chan);

/* ---- simulator-only controls (absent from the real SDK) ---- */
int   xsp3sim_trigger(int path, int card, int n);
int   xsp3sim_gate(int path, int card, int open);
int   xsp3sim_set_rate(int path, int chan, double counts_per_second);
int   xsp3sim_set_seed(int path, uint64_t seed);
int   xsp3sim_inject_fault(const char *function, int code, int after_calls);
int   xsp3sim_clear_faults(void);
int   xsp3sim_refuse_address(const char *address);
int   xsp3sim_version(void);

#ifdef __cplusplus
}
#endif
#endif /* XSP3_ABI_H */
