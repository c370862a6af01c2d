/* libkvmrtgs: the guest side of kvmrt guest services (kvmrt-gs(7)).
 *
 * A small C library without dependencies for real-time guest applications:
 * it talks protocol gs1 over the virtio-serial port org.kvmrt.gs.0
 * (/dev/vportNpM), or over a unix socket standing in for it.
 *
 *   struct kvmrtgs *gs = kvmrtgs_open(NULL, 100);   // find the port; 100 ms timeout
 *   if (!gs || kvmrtgs_available(gs, NULL) < 0) ...  // no host side: fails at once
 *   kvmrtgs_log_msg(gs, "overrun", 7, KVMRTGS_NOWAIT);
 *   kvmrtgs_close(gs);
 *
 * Nothing blocks longer than the timeout: the port is non-blocking and a
 * host side that is not connected fails a call at once (errno ENOTCONN).
 * With KVMRTGS_NOWAIT a call costs the write of one line: a port too full
 * to take it fails at once (errno EAGAIN; the line is dropped).
 * No call allocates memory except kvmrtgs_open. A handle is not
 * thread-safe; use one per thread (the port opens once: share it under a
 * lock, or open it in one thread).
 *
 * Calls return KVMRTGS_OK (0), KVMRTGS_CUT (1: the argument was longer
 * than the host accepts and was cut; kvmrtgs_detail() says how many bytes
 * were kept) or -1 with errno: ENODEV (no port), ENOTCONN (no host side),
 * ETIMEDOUT (no reply in time), EAGAIN (KVMRTGS_NOWAIT: the port is full,
 * the host side does not read), EPROTO (not a gs1 reply), EREMOTEIO (the
 * host said err; kvmrtgs_detail() says why), EINVAL (bad argument).
 */
#ifndef LIBKVMRTGS_H
#define LIBKVMRTGS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVMRTGS_VERSION "gs1"
#define KVMRTGS_PORT_NAME "org.kvmrt.gs.0"
#define KVMRTGS_MAX_LINE 4096 /* bytes per line, newline included */

#define KVMRTGS_OK 0
#define KVMRTGS_CUT 1

#define KVMRTGS_NOWAIT 1 /* flags: send and return; the host sends no reply */

struct kvmrtgs;

/* Open PORT (NULL: the port named org.kvmrt.gs.0 in /sys/class/virtio-ports;
 * a unix socket path is accepted too) with a timeout for every call. */
struct kvmrtgs *kvmrtgs_open(const char *port, int timeout_ms);
void kvmrtgs_close(struct kvmrtgs *gs);
/* Where *_GUEST events go: NULL none, "" the guest's tracefs trace_marker
 * (the default, when it has one), else that file. */
int kvmrtgs_set_trace_marker(struct kvmrtgs *gs, const char *path);

/* COMMAND NULL: "available"; else "ping", "log_msg"...: "<command>_available". */
int kvmrtgs_available(struct kvmrtgs *gs, const char *command);
/* The host's CLOCK_REALTIME at the reply, in *host_ns (may be NULL). */
int kvmrtgs_ping(struct kvmrtgs *gs, const char *cookie, long long *host_ns);
int kvmrtgs_log_msg(struct kvmrtgs *gs, const void *msg, size_t len, int flags);
/* SCOPE 0: the host CPU this vCPU runs on, 1: the VM's CPUs, 2: all CPUs. */
int kvmrtgs_trace_flush(struct kvmrtgs *gs, int scope);
int kvmrtgs_trace_log_data(struct kvmrtgs *gs, const void *data, size_t len, int flags);
/* Any request of the protocol. */
int kvmrtgs_request(struct kvmrtgs *gs, const char *command, const void *arg,
                    size_t len, int flags);

/* Of the last call: the reply's detail (NUL-terminated text), the host's
 * time of the reply, the guest's time of the request (CLOCK_REALTIME ns). */
const char *kvmrtgs_detail(const struct kvmrtgs *gs);
long long kvmrtgs_host_ns(const struct kvmrtgs *gs);
long long kvmrtgs_guest_ns(const struct kvmrtgs *gs);

#ifdef __cplusplus
}
#endif
#endif
