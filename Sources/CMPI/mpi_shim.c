// mpi_shim.c — Open MPI through dlopen: functions and predefined handles resolved by name
// (Open MPI's ABI, libmpi.so.40: handles are addresses of globals such as ompi_mpi_comm_world).
#define _GNU_SOURCE
#include "ttfc_mpi.h"
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef void *Handle;
static int (*p_init_thread)(int *, char ***, int, int *);
static int (*p_initialized)(int *);
static int (*p_finalize)(void);
static int (*p_abort)(Handle, int);
static int (*p_rank)(Handle, int *);
static int (*p_size)(Handle, int *);
static int (*p_set_errhandler)(Handle, Handle);
static int (*p_error_string)(int, char *, int *);
static int (*p_iallreduce)(const void *, void *, int, Handle, Handle, Handle, void **);
static int (*p_iallgatherv)(const void *, int, Handle, void *, const int *, const int *, Handle, Handle, void **);
static int (*p_ialltoallv)(const void *, const int *, const int *, Handle, void *, const int *, const int *, Handle, Handle, void **);
static int (*p_ibarrier)(Handle, void **);
static int (*p_test)(void **, int *, void *);
static Handle comm_world, type_f32, type_f64, type_i64, type_byte, op_sum, errors_return;
static int loaded = 0;

#define RESOLVE(var, name) do { *(void **)(&var) = dlsym(library, name); \
  if (!var) { snprintf(error, error_length, "libmpi has no symbol %s (ttfc needs Open MPI 4 or later)", name); return 1; } } while (0)

int ttfc_mpi_load(const char *path, char *error, size_t error_length) {
  if (loaded) return 0;
  // RTLD_GLOBAL: Open MPI's components (dlopened by libmpi itself) resolve libmpi's symbols.
  void *library = dlopen(path ? path : "libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
  if (!library) {
    snprintf(error, error_length, "cannot load %s (%s): install Open MPI (tools/setup: libopenmpi-dev, openmpi-bin)",
             path ? path : "libmpi.so.40", dlerror());
    return 1;
  }
  RESOLVE(p_init_thread, "MPI_Init_thread"); RESOLVE(p_initialized, "MPI_Initialized"); RESOLVE(p_finalize, "MPI_Finalize");
  RESOLVE(p_abort, "MPI_Abort"); RESOLVE(p_rank, "MPI_Comm_rank"); RESOLVE(p_size, "MPI_Comm_size");
  RESOLVE(p_set_errhandler, "MPI_Comm_set_errhandler"); RESOLVE(p_error_string, "MPI_Error_string");
  RESOLVE(p_iallreduce, "MPI_Iallreduce"); RESOLVE(p_iallgatherv, "MPI_Iallgatherv");
  RESOLVE(p_ialltoallv, "MPI_Ialltoallv"); RESOLVE(p_ibarrier, "MPI_Ibarrier"); RESOLVE(p_test, "MPI_Test");
  RESOLVE(comm_world, "ompi_mpi_comm_world"); RESOLVE(type_f32, "ompi_mpi_float"); RESOLVE(type_f64, "ompi_mpi_double");
  RESOLVE(type_i64, "ompi_mpi_int64_t"); RESOLVE(type_byte, "ompi_mpi_byte"); RESOLVE(op_sum, "ompi_mpi_op_sum");
  RESOLVE(errors_return, "ompi_mpi_errors_return");
  loaded = 1;
  return 0;
}

static Handle type_of(int type) {
  switch (type) {
  case TTFC_MPI_F32: return type_f32;
  case TTFC_MPI_F64: return type_f64;
  case TTFC_MPI_I64: return type_i64;
  default: return type_byte;
  }
}

int ttfc_mpi_init(int *rank, int *size) {
  if (!loaded) return TTFC_MPI_NOT_LOADED;
  int already = 0;
  p_initialized(&already);
  // MPI_THREAD_FUNNELED (1): ttfc's pool threads run kernels; only the main thread calls MPI.
  int provided = 0;
  int rc = already ? 0 : p_init_thread(NULL, NULL, 1, &provided);
  if (rc) return rc;
  if ((rc = p_set_errhandler(comm_world, errors_return))) return rc;
  if ((rc = p_rank(comm_world, rank))) return rc;
  return p_size(comm_world, size);
}

int ttfc_mpi_finalize(void) { return loaded ? p_finalize() : TTFC_MPI_NOT_LOADED; }
void ttfc_mpi_abort(int code) { if (loaded) p_abort(comm_world, code); _exit(code); }

void ttfc_mpi_error_string(int code, char *out, size_t length) {
  if (code == TTFC_MPI_TIMEOUT) { snprintf(out, length, "timed out"); return; }
  if (!loaded || length == 0) { snprintf(out, length, "MPI error %d", code); return; }
  char text[1024];
  int n = 0;
  if (p_error_string(code, text, &n) != 0) snprintf(out, length, "MPI error %d", code);
  else snprintf(out, length, "%.*s", n, text);
}

int ttfc_mpi_iallreduce_sum(void *buffer, int64_t count, int type, void **request) {
  if (!loaded) return TTFC_MPI_NOT_LOADED;
  if (count < 0 || count > 0x7fffffff) return 1;
  return p_iallreduce((const void *)1 /* MPI_IN_PLACE */, buffer, (int)count, type_of(type), op_sum, comm_world, request);
}

int ttfc_mpi_iallgatherv(const void *send, int64_t send_count, void *receive, const int *counts,
                         const int *displacements, int type, void **request) {
  if (!loaded) return TTFC_MPI_NOT_LOADED;
  if (send_count < 0 || send_count > 0x7fffffff) return 1;
  return p_iallgatherv(send, (int)send_count, type_of(type), receive, counts, displacements, type_of(type), comm_world, request);
}

int ttfc_mpi_ialltoallv(const void *send, const int *send_counts, const int *send_displacements, void *receive,
                        const int *receive_counts, const int *receive_displacements, int type, void **request) {
  if (!loaded) return TTFC_MPI_NOT_LOADED;
  return p_ialltoallv(send, send_counts, send_displacements, type_of(type), receive, receive_counts,
                      receive_displacements, type_of(type), comm_world, request);
}

int ttfc_mpi_ibarrier(void **request) { return loaded ? p_ibarrier(comm_world, request) : TTFC_MPI_NOT_LOADED; }

int ttfc_mpi_test(void **request, int *done) {
  if (!loaded) return TTFC_MPI_NOT_LOADED;
  return p_test(request, done, NULL /* MPI_STATUS_IGNORE */);
}

int ttfc_mpi_wait(void **request, double timeout_seconds) {
  if (!loaded) return TTFC_MPI_NOT_LOADED;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  long sleep_ns = 0;
  for (;;) {
    int done = 0;
    int rc = p_test(request, &done, NULL);
    if (rc) return rc;
    if (done) return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double waited = (double)(now.tv_sec - start.tv_sec) + 1e-9 * (double)(now.tv_nsec - start.tv_nsec);
    if (waited > timeout_seconds) return TTFC_MPI_TIMEOUT;
    // Spin briefly (a collective of a few kilobytes completes in microseconds), then back off to
    // 1 ms sleeps so a rank that waits for a slower one does not take its core.
    if (sleep_ns == 0) { sleep_ns = waited > 1e-4 ? 1000 : 0; if (!sleep_ns) continue; }
    struct timespec pause = {0, sleep_ns};
    nanosleep(&pause, NULL);
    if (sleep_ns < 1000000) sleep_ns *= 2;
  }
}

static char sigterm_message[1024];
static volatile sig_atomic_t sigterm_code = 1;
static void on_sigterm(int signal_number) {
  (void)signal_number;
  size_t n = strlen(sigterm_message);
  if (n) { ssize_t ignored = write(2, sigterm_message, n); (void)ignored; }
  _exit(sigterm_code);
}

void ttfc_mpi_on_sigterm(const char *message, int code) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &old);
  snprintf(sigterm_message, sizeof sigterm_message, "%s", message);
  sigterm_code = code;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_sigterm;
  sigaction(SIGTERM, &action, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);
}
