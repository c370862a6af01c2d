/* kvmrt-gs: guest services from the guest's command line (kvmrt-gs(1)).
 *
 *   kvmrt-gs [--port PATH] [--timeout S] [--trace-marker PATH | --no-trace]
 *            [COMMAND ARGS]...
 *
 * Exit status: 0 every command succeeded, 1 one failed or the host side is
 * not available (the commands after it are not run), 2 usage error.
 */
#include "libkvmrtgs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
	"usage: kvmrt-gs [--port PATH] [--timeout S] [--trace-marker PATH | --no-trace]\n"
	"                [COMMAND ARGS]...\n"
	"commands: available, ping_available, ping COOKIE, log_msg MESSAGE,\n"
	"          log_msg_available, trace_flush SCOPE (alias xtrace_flush),\n"
	"          trace_flush_available, trace_log_data DATA, trace_log_data_available\n"
	"MESSAGE and DATA: text, or hex bytes as hex:0a1b or 0x0a1b\n";

struct command {
	const char *name;
	int nargs;
};

static const struct command commands[] = {
	{ "available", 0 },	  { "ping", 1 },	    { "ping_available", 0 },
	{ "log_msg", 1 },	  { "log_msg_available", 0 }, { "trace_flush", 1 },
	{ "trace_flush_available", 0 }, { "trace_log_data", 1 }, { "trace_log_data_available", 0 },
	{ NULL, 0 },
};

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "kvmrt-gs: %s%s\n%s", what, arg ? arg : "", usage);
	return 2;
}

static const struct command *find(const char *name)
{
	const struct command *c;

	if (!strcmp(name, "xtrace_flush"))
		name = "trace_flush";
	for (c = commands; c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* MESSAGE/DATA: "hex:0a1b" or "0x0a1b" (blanks allowed) is bytes, else text.
 * Decodes in place; returns the length or -1. */
static long parse_data(char *text)
{
	const char *in = text;
	long n = 0;

	if (!strncmp(text, "hex:", 4))
		in += 4;
	else if (!strncmp(text, "0x", 2))
		in += 2;
	else
		return (long)strlen(text);
	while (*in) {
		int hi, lo;

		if (*in == ' ') {
			in++;
			continue;
		}
		hi = hexval(in[0]);
		lo = hi < 0 ? -1 : hexval(in[1]);
		if (lo < 0)
			return -1;
		text[n++] = (char)(hi * 16 + lo);
		in += 2;
	}
	return n;
}

static long long realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int run(struct kvmrtgs *gs, const char *name, char *arg, long arglen)
{
	int r;

	if (!strcmp(name, "ping")) {
		long long host_ns, sent, now;

		r = kvmrtgs_ping(gs, arg, &host_ns);
		now = realtime_ns();
		sent = kvmrtgs_guest_ns(gs);
		if (r >= 0)
			printf("%s host_ns=%lld rtt_ns=%lld offset_ns=%lld\n", kvmrtgs_detail(gs),
			       host_ns, now - sent, host_ns - (sent + (now - sent) / 2));
	} else {
		r = kvmrtgs_request(gs, name, arg, arg ? (size_t)arglen : 0, 0);
		if (r >= 0 && !strcmp(name, "trace_flush"))
			printf("%s\n", kvmrtgs_detail(gs));
	}
	if (r == KVMRTGS_CUT)
		fprintf(stderr, "kvmrt-gs: %s: cut to %s bytes (the host takes lines of %d bytes)\n",
			name, kvmrtgs_detail(gs), KVMRTGS_MAX_LINE);
	if (r < 0) {
		if (errno == EREMOTEIO)
			fprintf(stderr, "kvmrt-gs: %s: %s\n", name, kvmrtgs_detail(gs));
		else if (errno == ENOTCONN || errno == ETIMEDOUT)
			fprintf(stderr, "kvmrt-gs: %s: not available: %s\n", name,
				errno == ENOTCONN ? "the host side is not connected"
						  : "no answer from the host in time");
		else
			fprintf(stderr, "kvmrt-gs: %s: %s\n", name, strerror(errno));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *port = NULL, *marker = "";
	double timeout = 1.0;
	struct kvmrtgs *gs;
	long lens[256];
	int i = 1, first, r = 0;

	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--no-trace")) {
			marker = NULL;
		} else if (!strcmp(argv[i], "--trace-marker") && i + 1 < argc) {
			marker = argv[++i];
		} else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
			port = argv[++i];
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			char *end;

			timeout = strtod(argv[++i], &end);
			if (*end || timeout < 0 || timeout > 3600)
				return usage_error("--timeout S: seconds, not ", argv[i]);
		} else if (!strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else {
			return usage_error("unknown option ", argv[i]);
		}
	}
	first = i;
	if (first >= argc)
		return usage_error("no command", NULL);
	if (argc - first > 256)
		return usage_error("too many arguments", NULL);
	for (i = first; i < argc; i++) { /* check everything before sending anything */
		const struct command *c = find(argv[i]);

		if (!c)
			return usage_error("unknown command ", argv[i]);
		if (c->nargs && i + 1 >= argc)
			return usage_error("needs an argument: ", argv[i]);
		if (!c->nargs)
			continue;
		i++;
		if (!strcmp(c->name, "trace_flush") && (strlen(argv[i]) != 1 || argv[i][0] < '0' ||
							argv[i][0] > '2'))
			return usage_error("trace_flush SCOPE: 0, 1 or 2, not ", argv[i]);
		lens[i - first] = strcmp(c->name, "ping") && strcmp(c->name, "trace_flush")
					  ? parse_data(argv[i]) : (long)strlen(argv[i]);
		if (lens[i - first] < 0)
			return usage_error("not hex bytes: ", argv[i]);
	}
	gs = kvmrtgs_open(port, (int)(timeout * 1000));
	if (!gs) {
		fprintf(stderr, "kvmrt-gs: not available: %s\n",
			errno == ENODEV ? "no port " KVMRTGS_PORT_NAME " (guest_services off?)"
					: strerror(errno));
		return 1;
	}
	if (kvmrtgs_set_trace_marker(gs, marker) < 0)
		fprintf(stderr, "kvmrt-gs: no guest events: %s: %s\n", marker, strerror(errno));
	for (i = first; i < argc && !r; i++) {
		const struct command *c = find(argv[i]);

		if (c->nargs) {
			i++;
			r = run(gs, c->name, argv[i], lens[i - first]);
		} else {
			r = run(gs, c->name, NULL, 0);
		}
	}
	kvmrtgs_close(gs);
	return r;
}
