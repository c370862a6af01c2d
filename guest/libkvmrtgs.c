/* libkvmrtgs: the guest side of kvmrt guest services (see libkvmrtgs.h). */
#define _GNU_SOURCE
#include "libkvmrtgs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PORTS_DIR "/sys/class/virtio-ports"

struct kvmrtgs {
	int fd;
	int is_socket;
	int marker;
	int timeout_ms;
	unsigned long seq;
	long long host_ns;
	long long guest_ns;
	size_t rxlen;
	int skipping;
	char line[KVMRTGS_MAX_LINE + 1];
	char rx[KVMRTGS_MAX_LINE];
	char detail[KVMRTGS_MAX_LINE];
};

static long long now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int find_port(char *path, size_t size)
{
	DIR *dir = opendir(PORTS_DIR);
	struct dirent *d;
	int found = 0;

	if (!dir)
		return -1;
	while (!found && (d = readdir(dir))) {
		char name_file[512], name[128] = "";
		FILE *f;

		if (d->d_name[0] == '.')
			continue;
		snprintf(name_file, sizeof(name_file), PORTS_DIR "/%s/name", d->d_name);
		f = fopen(name_file, "re");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f))
			name[strcspn(name, "\n")] = 0;
		fclose(f);
		if (!strcmp(name, KVMRTGS_PORT_NAME)) {
			snprintf(path, size, "/dev/%s", d->d_name);
			found = 1;
		}
	}
	closedir(dir);
	return found ? 0 : -1;
}

static int open_port(const char *path, int *is_socket)
{
	struct stat st;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (stat(path, &st) < 0)
		return -1;
	*is_socket = S_ISSOCK(st.st_mode);
	if (!*is_socket)
		return open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		errno = ENOTCONN;
		return -1;
	}
	return fd;
}

struct kvmrtgs *kvmrtgs_open(const char *port, int timeout_ms)
{
	char found[300];
	struct kvmrtgs *gs;
	int is_socket = 0, fd;

	if (!port) {
		if (find_port(found, sizeof(found)) < 0) {
			errno = ENODEV;
			return NULL;
		}
		port = found;
	}
	fd = open_port(port, &is_socket);
	if (fd < 0) {
		if (errno == ENOENT)
			errno = ENODEV;
		return NULL;
	}
	gs = calloc(1, sizeof(*gs));
	if (!gs) {
		close(fd);
		return NULL;
	}
	gs->fd = fd;
	gs->is_socket = is_socket;
	gs->timeout_ms = timeout_ms;
	gs->marker = -1;
	kvmrtgs_set_trace_marker(gs, "");
	return gs;
}

void kvmrtgs_close(struct kvmrtgs *gs)
{
	if (!gs)
		return;
	close(gs->fd);
	if (gs->marker >= 0)
		close(gs->marker);
	free(gs);
}

int kvmrtgs_set_trace_marker(struct kvmrtgs *gs, const char *path)
{
	static const char *const defaults[] = {
		"/sys/kernel/tracing/trace_marker",
		"/sys/kernel/debug/tracing/trace_marker",
	};
	unsigned i;

	if (gs->marker >= 0)
		close(gs->marker);
	gs->marker = -1;
	if (!path)
		return 0;
	if (*path) {
		gs->marker = open(path, O_WRONLY | O_CLOEXEC);
		return gs->marker < 0 ? -1 : 0;
	}
	for (i = 0; i < 2 && gs->marker < 0; i++)
		gs->marker = open(defaults[i], O_WRONLY | O_CLOEXEC);
	return 0;
}

/* ARG escaped into OUT (room bytes); returns the bytes of ARG that fit. */
static size_t escape(char *out, size_t room, const unsigned char *arg, size_t len,
		     size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		unsigned char b = arg[i];

		if (b >= 0x20 && b < 0x7f && b != '\\') {
			if (n + 1 > room)
				break;
			out[n++] = b;
		} else if (b == '\\') {
			if (n + 2 > room)
				break;
			out[n++] = '\\';
			out[n++] = '\\';
		} else {
			if (n + 4 > room)
				break;
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[b >> 4];
			out[n++] = hex[b & 15];
		}
	}
	*used = n;
	return i;
}

static int unescape(char *out, size_t size, const char *in)
{
	size_t n = 0;

	while (*in && n + 1 < size) {
		if (in[0] == '\\' && in[1] == '\\') {
			out[n++] = '\\';
			in += 2;
		} else if (in[0] == '\\' && in[1] == 'x' && in[2] && in[3]) {
			char h[3] = { in[2], in[3], 0 };

			out[n++] = (char)strtol(h, NULL, 16);
			in += 4;
		} else {
			out[n++] = *in++;
		}
	}
	out[n] = 0;
	return (int)n;
}

static int remaining_ms(long long deadline)
{
	long long left = (deadline - now_ns(CLOCK_MONOTONIC)) / 1000000;

	return left < 0 ? 0 : (int)left;
}

/* Wait for EVENTS; -1 with ETIMEDOUT or ENOTCONN. */
static int wait_for(struct kvmrtgs *gs, short events, long long deadline)
{
	struct pollfd p = { .fd = gs->fd, .events = events };
	int n;

	do
		n = poll(&p, 1, remaining_ms(deadline));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (n == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	if ((p.revents & (POLLHUP | POLLERR)) && !(p.revents & events)) {
		errno = ENOTCONN;
		return -1;
	}
	return 0;
}

/* NOWAIT: a port too full to take the line's first byte fails at once
 * (EAGAIN, the line dropped); a line begun is finished within the timeout. */
static int send_line(struct kvmrtgs *gs, const char *buf, size_t len, long long deadline,
		     int nowait)
{
	size_t whole = len;

	while (len) {
		ssize_t n = gs->is_socket ? send(gs->fd, buf, len, MSG_NOSIGNAL)
					  : write(gs->fd, buf, len);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			int at_once = nowait && len == whole;

			if (wait_for(gs, POLLOUT, at_once ? 0 : deadline) < 0) {
				if (at_once && errno == ETIMEDOUT)
					errno = EAGAIN;
				return -1;
			}
			nowait = 0; /* writable again: a line like any other */
		} else {
			if (n == 0 || errno == EPIPE || errno == ECONNRESET)
				errno = ENOTCONN;
			return -1;
		}
	}
	return 0;
}

/* The next complete line in gs->rx (NUL-terminated in place), or NULL. */
static char *next_line(struct kvmrtgs *gs, size_t *consumed)
{
	char *nl = memchr(gs->rx, '\n', gs->rxlen);

	if (!nl) {
		if (gs->rxlen == sizeof(gs->rx)) { /* an over-long line: drop it */
			gs->rxlen = 0;
			gs->skipping = 1;
		}
		return NULL;
	}
	*nl = 0;
	*consumed = (size_t)(nl - gs->rx) + 1;
	return gs->rx;
}

static int parse_reply(struct kvmrtgs *gs, char *line, unsigned long seq)
{
	char status[8];
	unsigned long rseq;
	long long host_ns;
	int off = 0;

	if (sscanf(line, KVMRTGS_VERSION " %lu %7s %lld%n", &rseq, status, &host_ns, &off) != 3) {
		errno = EPROTO;
		return -1;
	}
	if (rseq != seq)
		return 1; /* an older request's reply */
	gs->host_ns = host_ns;
	unescape(gs->detail, sizeof(gs->detail), line[off] == ' ' ? line + off + 1 : "");
	if (!strcmp(status, "ok"))
		return 0;
	if (!strcmp(status, "cut"))
		return 2;
	errno = !strcmp(status, "err") ? EREMOTEIO : EPROTO;
	return -1;
}

static int receive(struct kvmrtgs *gs, unsigned long seq, long long deadline)
{
	for (;;) {
		size_t consumed;
		char *line;
		ssize_t n;

		while ((line = next_line(gs, &consumed))) {
			int skip = gs->skipping, r = skip ? 1 : parse_reply(gs, line, seq);

			gs->skipping = 0;
			memmove(gs->rx, gs->rx + consumed, gs->rxlen - consumed);
			gs->rxlen -= consumed;
			if (r != 1)
				return r;
		}
		if (wait_for(gs, POLLIN, deadline) < 0)
			return -1;
		n = read(gs->fd, gs->rx + gs->rxlen, sizeof(gs->rx) - gs->rxlen);
		if (n == 0) {
			errno = ENOTCONN;
			return -1;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (n > 0)
			gs->rxlen += (size_t)n;
	}
}

static void mark(struct kvmrtgs *gs, const char *command, unsigned long seq,
		 const void *arg, size_t len)
{
	char buf[512];
	size_t used, i;
	int n;

	if (gs->marker < 0)
		return;
	n = snprintf(buf, sizeof(buf), "%s_GUEST seq=%lu guest_ns=%lld arg=", command, seq,
		     gs->guest_ns);
	if (n < 0 || (size_t)n > sizeof(buf) - 8)
		return;
	for (i = 0; command[i]; i++) /* COMMAND_GUEST in capitals */
		if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] -= 'a' - 'A';
	escape(buf + n, sizeof(buf) - n - 2, arg, len > 256 ? 256 : len, &used);
	buf[n + used] = '\n';
	if (write(gs->marker, buf, n + used + 1) < 0) {
		/* a disabled buffer costs the guest record, not the call */
	}
}

int kvmrtgs_request(struct kvmrtgs *gs, const char *command, const void *arg, size_t len,
		    int flags)
{
	long long deadline;
	unsigned long seq;
	size_t kept, used;
	int head, cpu = sched_getcpu(), r;

	if (!gs || !command || strchr(command, ' ')) {
		errno = EINVAL;
		return -1;
	}
	deadline = now_ns(CLOCK_MONOTONIC) + gs->timeout_ms * 1000000LL;
	gs->seq = gs->seq % 0xFFFFFFFFUL + 1;
	seq = (flags & KVMRTGS_NOWAIT) ? 0 : gs->seq;
	gs->guest_ns = now_ns(CLOCK_REALTIME);
	gs->detail[0] = 0;
	head = cpu < 0 ? snprintf(gs->line, sizeof(gs->line), KVMRTGS_VERSION " %lu %s %lld -",
				  seq, command, gs->guest_ns)
		       : snprintf(gs->line, sizeof(gs->line), KVMRTGS_VERSION " %lu %s %lld %d",
				  seq, command, gs->guest_ns, cpu);
	if (head < 0 || head > KVMRTGS_MAX_LINE - 2) {
		errno = EINVAL;
		return -1;
	}
	kept = used = 0;
	if (len) {
		gs->line[head++] = ' ';
		kept = escape(gs->line + head, KVMRTGS_MAX_LINE - 1 - head, arg, len, &used);
	}
	gs->line[head + used] = '\n';
	mark(gs, command, seq, arg, len);
	if (send_line(gs, gs->line, head + used + 1, deadline, !seq) < 0)
		return -1;
	if (kept < len)
		snprintf(gs->detail, sizeof(gs->detail), "%zu", kept);
	if (!seq)
		return kept < len ? KVMRTGS_CUT : KVMRTGS_OK;
	r = receive(gs, seq, deadline);
	if (r < 0)
		return -1;
	if (kept < len && r == 0)
		snprintf(gs->detail, sizeof(gs->detail), "%zu", kept);
	return (r == 2 || kept < len) ? KVMRTGS_CUT : KVMRTGS_OK;
}

int kvmrtgs_available(struct kvmrtgs *gs, const char *command)
{
	char name[64];

	if (!command)
		return kvmrtgs_request(gs, "available", NULL, 0, 0);
	if (snprintf(name, sizeof(name), "%s_available", command) >= (int)sizeof(name)) {
		errno = EINVAL;
		return -1;
	}
	return kvmrtgs_request(gs, name, NULL, 0, 0);
}

int kvmrtgs_ping(struct kvmrtgs *gs, const char *cookie, long long *host_ns)
{
	int r = kvmrtgs_request(gs, "ping", cookie, cookie ? strlen(cookie) : 0, 0);

	if (r >= 0 && host_ns)
		*host_ns = gs->host_ns;
	return r;
}

int kvmrtgs_log_msg(struct kvmrtgs *gs, const void *msg, size_t len, int flags)
{
	return kvmrtgs_request(gs, "log_msg", msg, len, flags);
}

int kvmrtgs_trace_flush(struct kvmrtgs *gs, int scope)
{
	char arg[2] = { (char)('0' + scope), 0 };

	if (scope < 0 || scope > 2) {
		errno = EINVAL;
		return -1;
	}
	return kvmrtgs_request(gs, "trace_flush", arg, 1, 0);
}

int kvmrtgs_trace_log_data(struct kvmrtgs *gs, const void *data, size_t len, int flags)
{
	return kvmrtgs_request(gs, "trace_log_data", data, len, flags);
}

const char *kvmrtgs_detail(const struct kvmrtgs *gs)
{
	return gs->detail;
}

long long kvmrtgs_host_ns(const struct kvmrtgs *gs)
{
	return gs->host_ns;
}

long long kvmrtgs_guest_ns(const struct kvmrtgs *gs)
{
	return gs->guest_ns;
}
