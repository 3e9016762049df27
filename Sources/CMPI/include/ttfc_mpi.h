// ttfc_mpi.h — the MPI calls ttfc needs, as plain C functions Swift can call. Open MPI's handles
// (MPI_COMM_WORLD, MPI_DOUBLE, MPI_SUM, ...) are macros over the addresses of library globals,
// which Swift cannot import; mpi_shim.c loads libmpi with dlopen and resolves them by name, so
// ttfc runs (and builds) without MPI and needs it only for `--distributed`.
#ifndef TTFC_MPI_H
#define TTFC_MPI_H
#include <stddef.h>
#include <stdint.h>

/// Element types of the collectives.
enum { TTFC_MPI_F32 = 0, TTFC_MPI_F64 = 1, TTFC_MPI_I64 = 2, TTFC_MPI_BYTE = 3 };
/// Results: 0 success; TTFC_MPI_TIMEOUT when a wait passed its deadline; else an MPI error code.
enum { TTFC_MPI_TIMEOUT = -1000, TTFC_MPI_NOT_LOADED = -1001 };

/// Loads libmpi (`path`, or libmpi.so.40 when NULL); 0 on success, else writes the reason to `error`.
int ttfc_mpi_load(const char *path, char *error, size_t error_length);
/// MPI_Init_thread (funneled), errors returned (MPI_ERRORS_RETURN) instead of aborting; rank and size of the world.
int ttfc_mpi_init(int *rank, int *size);
int ttfc_mpi_finalize(void);
void ttfc_mpi_abort(int code);
/// MPI's text for an error code.
void ttfc_mpi_error_string(int code, char *out, size_t length);
/// Nonblocking collectives on MPI_COMM_WORLD; `request` receives the handle for ttfc_mpi_wait.
int ttfc_mpi_iallreduce_sum(void *buffer, int64_t count, int type, void **request);
int ttfc_mpi_iallgatherv(const void *send, int64_t send_count, void *receive, const int *counts,
                         const int *displacements, int type, void **request);
int ttfc_mpi_ialltoallv(const void *send, const int *send_counts, const int *send_displacements, void *receive,
                        const int *receive_counts, const int *receive_displacements, int type, void **request);
int ttfc_mpi_ibarrier(void **request);
/// Whether the request has completed (1), not yet (0), or failed (an MPI error code < 0 negated).
int ttfc_mpi_test(void **request, int *done);
/// Waits for `request` at most `timeout_seconds` (polling with a growing sleep, so a waiting rank
/// leaves the cores to the others); TTFC_MPI_TIMEOUT when the deadline passes.
int ttfc_mpi_wait(void **request, double timeout_seconds);
/// The message written to stderr when the process gets SIGTERM (what mpirun sends the surviving
/// ranks when one dies): async-signal safe, then _exit(`code`). Call again to change the message.
void ttfc_mpi_on_sigterm(const char *message, int code);
#endif
