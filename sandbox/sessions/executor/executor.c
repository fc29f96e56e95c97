/*
 * sandbox-executor: runs the agent's commands inside a sandbox container and
 * answers the host over a unix socket.
 *
 * Why a static C binary: it must work in images we did not build (an Alpine
 * image without Python, an Inspect user's image). It is bind-mounted read-only
 * into the container and started as the container command (under docker's
 * --init) as root with only a few capabilities. Every command it spawns runs as
 * the agent's uid/gid with no capabilities at all, so the agent can neither
 * signal, ptrace nor replace the executor.
 *
 *   sandbox-executor serve --socket PATH --agent-uid N --agent-gid N
 *                          [--strict] [--allow-root] [--service-uid N]
 *                          [--observe-deny NAME:NR,...] [--bash-env NAME=VALUE ...]
 *
 * --bash-env: the environment the host gives every command (repeated); the warm bash
 * starts with it and serves the `bash -c` requests whose environment is exactly it (see
 * "warm bash").
 *
 * --observe-deny: the syscalls the container's seccomp profile hands to us (see "syscall
 * observation" below): commands calling them are recorded and refused with EPERM.
 *
 * --service-uid N: right after starting (as root), become uid/gid N -- a uid nobody else
 * has, neither root nor the agent -- keeping only the capabilities listed below. The
 * socket directory must then belong to N (the host chowns it). Without it the executor
 * stays uid 0, and under --allow-root a root command (uid 0, no capabilities) could
 * still signal the executor and, as the directory's owner, write into the host's socket
 * directory (plant files on the host, replace the socket with its own server).
 *
 * Capabilities it uses (the container gets cap_drop ALL + cap_add of these):
 *   SETUID, SETGID  drop each command child to the agent's uid/gid (setgroups too)
 *   SETPCAP         empty the capability bounding set of each command child
 *   KILL            signal command trees on timeout/cap/hang-up: they run under
 *                   the agent's uid, which root may only signal with CAP_KILL
 *   DAC_READ_SEARCH (recommended) lets FS_SNAPSHOT enter directories the agent
 *                   made unreadable (a 0700 home, chmod 000) -- without it such a
 *                   directory is reported but not entered
 *   DAC_OVERRIDE, CHOWN  only when the socket directory is not owned by root (a
 *                   non-root host user, whose uid must differ from the agent's):
 *                   to enter that 0700 directory and chown the socket to its owner
 *
 * Run as a non-root user (tests only), --agent-uid must be that same uid and
 * commands run without any privilege change: no isolation from the executor.
 *
 * ------------------------------------------------------------------ protocol
 * One connection carries exactly one request and its reply; then it is closed.
 *
 * Frame:   type (1 byte) | length (uint32, big endian) | payload (length bytes)
 *          length <= MAX_FRAME (256 KiB). Output/data frames carry <= 64 KiB.
 *
 * Request (host -> executor): an op frame, parameter frames, then '.'.
 *   op frames (empty payload):
 *     'H' PING   'X' EXEC   'R' READ_FILE   'W' WRITE_FILE   'S' PS
 *     'F' FS_SNAPSHOT   'O' OBSERVE (PS then FS_SNAPSHOT, one reply)
 *     'V' WATCH (OBSERVE as a delta, on the watcher's own socket PATH.w: see "WATCH")
 *   parameter frames (strings must not contain NUL, integers are decimal ASCII):
 *     'a' argv element (repeated, EXEC)      'e' NAME=VALUE env entry (repeated)
 *     'd' cwd                                'u' user (agent name/uid, root/0)
 *     't' timeout in milliseconds            'c' output cap in bytes
 *     'i' stdin bytes (repeated, appended)   'p' path (READ/WRITE) or root (FS,
 *                                                repeated)
 *     'm' file mode (WRITE)                  'n' max bytes (READ) / max entries (FS)
 *     'b' file data (repeated, WRITE)        '.' end of request (empty)
 *     'y' observe syscalls (EXEC; 1 default, 0 off: the bench's baseline)
 *   stdin and file data are limited to MAX_INPUT bytes in total.
 *   A relative cwd or READ/WRITE path is relative to the user's home (from
 *   /etc/passwd, parsed here: a static binary has no NSS; "/" when missing).
 *   Defaults: timeout 60 s, cap 1 MiB, READ max 64 MiB, FS max 20000 entries.
 *   The host must not half-close its side: EOF on the connection during EXEC
 *   means "the host went away" and kills the command's tree.
 *
 * Reply (executor -> host):
 *     'o' stdout bytes    'e' stderr bytes    'b' file data (READ)
 *     'r' process record (PS, and EXEC survivors)
 *     'f' file entry record (FS_SNAPSHOT; the host still accepts it)
 *     'g' batch of file entries (FS_SNAPSHOT), at most 64 KiB, each entry: type
 *         (f/d/l/o) | size int64 | mode u32 | mtime_ns int64 | uid u32 | path
 *         length u32 | path (integers big endian)
 *     'y' syscall record (EXEC, before 'Z'): everything recorded since the last EXEC
 *         reply took them: q command serial, p pid, n nr, N name, d denied (0/1), A the
 *         six arguments (decimal, space separated), T wall time ns, and what was read from
 *         the caller's memory: P path, v strings (argv, mount's source/target/type; NUL
 *         separated), S sockaddr bytes, B 16 bytes (rlimit, msghdr), u unreadable, k cut
 *     'Z' final result record -- always the last frame of a successful reply
 *     '!' error record (fields 'e' errno, 'm' message) -- last frame on failure
 *   A record payload is a sequence of fields: key (1 byte) | length (uint32 BE)
 *   | value. Integers are decimal ASCII, strings raw bytes.
 *     process record: p pid, P ppid, g pgid, s sid, u uid, c comm, l cmdline
 *                     (NULs turned into spaces), S state
 *     file entry:     p path, t type (f/d/l/o), z size, m mode, T mtime_ns, u uid
 *     EXEC result:    x exit code | s signal, t timed_out, k truncated, c cap,
 *                     d duration_ns, U user CPU us, Y sys CPU us, M max RSS KiB,
 *                     n number of survivor records sent, q serial of this command,
 *                     o observed (0/1), y syscall records sent, D records dropped,
 *                     w warm (1: a fork of the warm bash, 0: a spawn)
 *     PING result:    v protocol version, p executor pid, u agent uid, g agent
 *                     gid, s strict, r allow_root, o syscall observation (0/1), y
 *                     number of denied syscalls observed
 *     READ result: z bytes sent. WRITE result: z bytes written.
 *     PS result: n records. FS result: n records, k truncated.
 *     OBSERVE result: n process records, f file entries, k truncated.
 *   Error errno EAGAIN means one thing: the agent's processes filled the pids limit
 *   (see "pid exhaustion" below); on EXEC the command did not run and the message is
 *   meant for the agent.
 *
 * ----------------------------------------------------------------- processes
 * main server (root, subreaper) -- accepts, forks one handler per connection,
 *   reaps every orphan that ends up with it.
 * handler (root, subreaper) -- reads the request; for EXEC clones the command
 *   child (CLONE_VM, see "spawn"), which calls setsid, drops to the agent's uid/gid, empties every
 *   capability set and the bounding set, sets no_new_privs, closes other fds and
 *   execs. Because the handler is a subreaper, every descendant of the command
 *   (even after setsid / double fork) stays below the handler, so a timeout or
 *   an output cap kills the whole tree by walking /proc parent chains.
 *   A command ends when its root process exits; output is then drained until
 *   pipe EOF or DRAIN_MS. Descendants still alive are "survivors": reported,
 *   and killed too with --strict. Without --strict the handler lingers after
 *   replying while they hold the command's pipes (draining and discarding their
 *   output so they do not die of SIGPIPE, reaping them); after that they are
 *   reparented to the main server, which reaps them.
 *   If the host hangs up mid-command, the tree is killed.
 * file helper (sbx-file-io, READ/WRITE) -- forked by the handler; file-system ids of the
 *   agent (every access is checked as the agent's), no capabilities, but the real and
 *   effective uid stay ours (root or the service uid) so the agent cannot kill it to make
 *   the host's reads fail.
 * main server as seccomp listener -- also serves the user notifications of every command
 *   tree (see "syscall observation"); a command child hands its listener over through a
 *   short-lived helper (CLONE_VM|CLONE_FILES, agent uid) that exits before the exec.
 * PS hides init, the main server and its handlers, known by pid (a shared page), never
 *   by name. FS_SNAPSHOT (root, DAC_READ_SEARCH) never follows a symlink, not even a
 *   directory on the way that was swapped for one after it was listed.
 * pid exhaustion: when fork fails with EAGAIN, the agent's processes (agent uid, below
 *   the main server) are SIGKILLed -- no fork needed -- and the fork is retried, so the
 *   host's requests keep working; the agent's next EXEC is refused with a notice saying
 *   how many of its processes were killed (then everything runs normally again).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROTOCOL_VERSION "3"
#define MAX_FRAME (256 * 1024)
#define CHUNK (64 * 1024)
#define MAX_INPUT (64 * 1024 * 1024)
#define MAX_ARGS 4096
#define MAX_ENV 1024
#define MAX_ROOTS 64
#define MAX_SURVIVORS 256
#define MAX_CMDLINE 4096
#define DRAIN_MS 80
#define DEFAULT_CAP (1024 * 1024)
#define DEFAULT_TIMEOUT_MS 60000LL
#define REQUEST_IDLE_MS 30000
#define SEND_TIMEOUT_S 30
#define REC_MAX (MAX_CMDLINE + PATH_MAX + 512)

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* Kernel capability ABI (no libcap, no linux headers needed with musl). */
struct cap_header { uint32_t version; int pid; };
struct cap_data { uint32_t effective, permitted, inheritable; };
#define CAP_VERSION_3 0x20080522

/* ------------------------------------------------------------------ globals */
static uid_t g_agent_uid;
static gid_t g_agent_gid;
static int g_strict;
static int g_allow_root;
static int g_privileged;          /* running as root: really drop privileges */
static pid_t g_main_pid;
/* State shared by the main server and its handlers: a MAP_SHARED mapping inherited across
 * fork (a command loses it at exec; the agent cannot reach our memory).
 *   handlers   pids of the live handlers, written by the main server only. PS hides
 *              exactly these pids, never "whatever is named like us": under --allow-root
 *              a root command could rename itself after us and would hide from PS.
 *   reclaimed  agent processes killed to free a full process table (reclaim_pids) and
 *              not yet told: the next EXEC is refused with a notice saying so, whichever
 *              request (often the host's PS) ran into the full table. */
#define MAX_HANDLERS 1024
#define OBS_RING (4 * 1024 * 1024)
static struct shared {
    volatile pid_t handlers[MAX_HANDLERS];
    int reclaimed;
    long long serial;               /* EXEC serials (syscall records name their command) */
    /* Syscall records: written by the main server (the seccomp listener) only, taken by
     * EXEC handlers under `ring_lock`; each is a u32 length and a record payload. */
    int ring_lock;
    unsigned long long ring_head, ring_tail;
    long long dropped;              /* records not kept (per-command cap, ring full) */
    unsigned char ring[OBS_RING];
} *g_shared;

static void logmsg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("sandbox-executor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------ I/O */

/* Write everything (blocking fd; SO_SNDTIMEO bounds a stuck host). */
static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_frame(int fd, char type, const void *payload, size_t len) {
    unsigned char hdr[5];
    if (len > MAX_FRAME) return -1;
    hdr[0] = (unsigned char)type;
    hdr[1] = (unsigned char)(len >> 24);
    hdr[2] = (unsigned char)(len >> 16);
    hdr[3] = (unsigned char)(len >> 8);
    hdr[4] = (unsigned char)len;
    /* One writev for header and payload; finish with write_all if it was short. */
    struct iovec iov[2] = {{hdr, 5}, {(void *)payload, len}};
    ssize_t n;
    do n = writev(fd, iov, len ? 2 : 1); while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    if ((size_t)n < 5) {
        if (write_all(fd, hdr + n, 5 - (size_t)n) < 0) return -1;
        n = 5;
    }
    return write_all(fd, (const char *)payload + (n - 5), len - (size_t)(n - 5));
}

/* Buffered reader for the request (one read usually fetches the whole request). */
static struct { unsigned char buf[CHUNK]; size_t pos, len; } g_in;

/* Read exactly len bytes, waiting at most idle_ms for each piece. */
static int read_full(int fd, void *buf, size_t len, int idle_ms) {
    char *p = buf;
    while (len > 0) {
        if (g_in.pos < g_in.len) {
            size_t k = g_in.len - g_in.pos < len ? g_in.len - g_in.pos : len;
            memcpy(p, g_in.buf + g_in.pos, k);
            g_in.pos += k;
            p += k;
            len -= k;
            continue;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, idle_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        ssize_t n = read(fd, g_in.buf, sizeof g_in.buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        g_in.pos = 0;
        g_in.len = (size_t)n;
    }
    return 0;
}

/* A record under construction (fields: key | u32 BE length | value). */
struct rec { size_t len; unsigned char buf[REC_MAX]; };

static void rec_bytes(struct rec *r, char key, const void *v, size_t n) {
    if (r->len + 5 + n > sizeof r->buf) n = 0; /* never overflow: drop the value */
    if (r->len + 5 > sizeof r->buf) return;
    r->buf[r->len++] = (unsigned char)key;
    r->buf[r->len++] = (unsigned char)(n >> 24);
    r->buf[r->len++] = (unsigned char)(n >> 16);
    r->buf[r->len++] = (unsigned char)(n >> 8);
    r->buf[r->len++] = (unsigned char)n;
    memcpy(r->buf + r->len, v, n);
    r->len += n;
}

static void rec_str(struct rec *r, char key, const char *s) { rec_bytes(r, key, s, strlen(s)); }

static void rec_int(struct rec *r, char key, long long v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", v);
    rec_bytes(r, key, tmp, (size_t)n);
}

static void send_error(int fd, int err, const char *fmt, ...) {
    static struct rec r;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r.len = 0;
    rec_int(&r, 'e', err);
    rec_str(&r, 'm', msg);
    send_frame(fd, '!', r.buf, r.len);
}

/* ------------------------------------------------------------------ request */
struct request {
    char op;
    char *argv[MAX_ARGS + 1];
    int argc;
    char *env[MAX_ENV + 1];
    int envc;
    char *cwd, *user, *path;
    char *roots[MAX_ROOTS];
    int nroots;
    long long timeout_ms, cap, maxn, mode, observe;
    unsigned char *data; /* stdin (EXEC) or file data (WRITE) */
    size_t data_len, data_size;
};

static int parse_ll(const char *s, long long *out) {
    long long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s)) return -1;
        if (v > (LLONG_MAX - 9) / 10) return -1;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

/* Reads one request; on a protocol violation sends '!' and returns -1. */
static int read_request(int fd, struct request *rq) {
    memset(rq, 0, sizeof *rq);
    rq->timeout_ms = DEFAULT_TIMEOUT_MS;
    rq->cap = DEFAULT_CAP;
    rq->maxn = -1;
    rq->mode = 0644;
    rq->observe = 1;
    int first = 1;
    for (;;) {
        unsigned char hdr[5];
        if (read_full(fd, hdr, 5, REQUEST_IDLE_MS) < 0) return -1;
        char type = (char)hdr[0];
        uint32_t len = ((uint32_t)hdr[1] << 24) | ((uint32_t)hdr[2] << 16) |
                       ((uint32_t)hdr[3] << 8) | hdr[4];
        if (len > MAX_FRAME) {
            send_error(fd, EPROTO, "frame of %u bytes exceeds the maximum", len);
            return -1;
        }
        char *p = malloc(len + 1);
        if (!p) { send_error(fd, ENOMEM, "out of memory"); return -1; }
        if (read_full(fd, p, len, REQUEST_IDLE_MS) < 0) { free(p); return -1; }
        p[len] = 0;
        if (first) {
            free(p);
            if (!strchr("HXRWSFOY", type) || len != 0) {
                send_error(fd, EPROTO, "bad op frame 0x%02x", (unsigned char)type);
                return -1;
            }
            rq->op = type;
            first = 0;
            continue;
        }
        if (type == '.') { free(p); return 0; }
        if (type == 'i' || type == 'b') {
            if (rq->data_len + len > MAX_INPUT) {
                free(p);
                send_error(fd, EFBIG, "input exceeds %d bytes", MAX_INPUT);
                return -1;
            }
            if (rq->data_len + len > rq->data_size) {
                size_t ns = rq->data_size ? rq->data_size : CHUNK;
                while (ns < rq->data_len + len) ns *= 2;
                unsigned char *nd = realloc(rq->data, ns);
                if (!nd) { free(p); send_error(fd, ENOMEM, "out of memory"); return -1; }
                rq->data = nd;
                rq->data_size = ns;
            }
            memcpy(rq->data + rq->data_len, p, len);
            rq->data_len += len;
            free(p);
            continue;
        }
        if (memchr(p, 0, len)) {
            free(p);
            send_error(fd, EPROTO, "NUL byte in field '%c'", type);
            return -1;
        }
        int bad = 0;
        switch (type) {
        case 'a': if (rq->argc >= MAX_ARGS) bad = 1; else rq->argv[rq->argc++] = p; break;
        case 'e':
            if (rq->envc >= MAX_ENV || !strchr(p, '=') || p[0] == '=') bad = 1;
            else rq->env[rq->envc++] = p;
            break;
        case 'p':
            if (rq->op == 'F' || rq->op == 'O') { if (rq->nroots >= MAX_ROOTS) bad = 1; else rq->roots[rq->nroots++] = p; }
            else if (rq->path) bad = 1; else rq->path = p;
            break;
        case 'd': if (rq->cwd) bad = 1; else rq->cwd = p; break;
        case 'u': if (rq->user) bad = 1; else rq->user = p; break;
        case 't': bad = parse_ll(p, &rq->timeout_ms); free(p); break;
        case 'c': bad = parse_ll(p, &rq->cap); free(p); break;
        case 'n': bad = parse_ll(p, &rq->maxn); free(p); break;
        case 'm': bad = parse_ll(p, &rq->mode) || rq->mode > 07777; free(p); break;
        case 'y': bad = parse_ll(p, &rq->observe) || rq->observe > 1; free(p); break;
        default: bad = 1; break;
        }
        if (bad) {
            send_error(fd, EPROTO, "bad or repeated field '%c'", type);
            return -1;
        }
    }
}

/* ------------------------------------------------------------------ users */
struct user { uid_t uid; gid_t gid; char name[64]; char home[PATH_MAX]; char shell[PATH_MAX]; };

/* Looks a uid (by_name == NULL) or a name up in /etc/passwd. No NSS in a static binary. */
static int passwd_lookup(const char *by_name, uid_t by_uid, struct user *u) {
    FILE *f = fopen("/etc/passwd", "re");
    char line[2048];
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        char *fields[7];
        int n = 0;
        char *s = line;
        line[strcspn(line, "\n")] = 0;
        while (n < 7) {
            fields[n++] = s;
            char *c = strchr(s, ':');
            if (!c) break;
            *c = 0;
            s = c + 1;
        }
        if (n < 7) continue;
        long long uid;
        if (parse_ll(fields[2], &uid) < 0) continue;
        if (by_name ? strcmp(fields[0], by_name) != 0 : (uid_t)uid != by_uid) continue;
        long long gid;
        u->uid = (uid_t)uid;
        u->gid = parse_ll(fields[3], &gid) == 0 ? (gid_t)gid : (gid_t)uid;
        snprintf(u->name, sizeof u->name, "%s", fields[0]);
        snprintf(u->home, sizeof u->home, "%s", fields[5][0] ? fields[5] : "/");
        snprintf(u->shell, sizeof u->shell, "%s", fields[6][0] ? fields[6] : "/bin/sh");
        fclose(f);
        return 0;
    }
    fclose(f);
    return -1;
}

/* /etc/passwd is read once, by the main server at start, for the agent and root; a handler
 * reads it again only if the file changed since (a stat per command instead of opening and
 * parsing it: a root command under --allow-root may edit it). */
static struct {
    int valid;
    struct stat sig;
    int found[2];
    struct user u[2];                /* [0] the agent, [1] root */
} g_pw;

static int passwd_same(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* passwd_lookup(NULL, uid, u) through the cache. */
static int passwd_cached(uid_t uid, struct user *u) {
    int slot = uid == g_agent_uid ? 0 : uid == 0 ? 1 : -1;
    struct stat st;
    if (slot < 0 || stat("/etc/passwd", &st) < 0) return passwd_lookup(NULL, uid, u);
    if (!g_pw.valid || !passwd_same(&st, &g_pw.sig)) {
        for (int i = 0; i < 2; i++) {
            memset(&g_pw.u[i], 0, sizeof g_pw.u[i]);
            g_pw.found[i] = passwd_lookup(NULL, i == 0 ? g_agent_uid : 0, &g_pw.u[i]) == 0;
        }
        g_pw.sig = st;
        g_pw.valid = 1;
    }
    if (!g_pw.found[slot]) return -1;
    *u = g_pw.u[slot];
    return 0;
}

/* Resolves the requested user: the agent (default) or root when allowed. */
static int resolve_user(const char *req, struct user *u, char *err, size_t errlen) {
    long long num = -1;
    int want_root = 0;
    if (req && *req) {
        if (parse_ll(req, &num) == 0) want_root = (num == 0);
        else if (strcmp(req, "root") == 0) want_root = 1;
    }
    if (want_root && g_agent_uid != 0) {
        if (!g_allow_root) {
            snprintf(err, errlen, "user '%s' is not allowed (commands run as the agent user)", req);
            return -1;
        }
        memset(u, 0, sizeof *u);
        if (passwd_cached(0, u) < 0) {
            snprintf(u->name, sizeof u->name, "root");
            snprintf(u->home, sizeof u->home, "/root");
            snprintf(u->shell, sizeof u->shell, "/bin/sh");
        }
        u->uid = 0;
        u->gid = 0;
        return 0;
    }
    memset(u, 0, sizeof *u);
    if (passwd_cached(g_agent_uid, u) < 0) {
        snprintf(u->name, sizeof u->name, "%u", (unsigned)g_agent_uid);
        snprintf(u->home, sizeof u->home, "/");
        snprintf(u->shell, sizeof u->shell, "/bin/sh");
    }
    u->uid = g_agent_uid;
    u->gid = g_agent_gid;
    if (req && *req) {
        int ok = (num >= 0) ? ((uid_t)num == g_agent_uid) : (strcmp(req, u->name) == 0);
        if (!ok) {
            snprintf(err, errlen, "user '%s' is not allowed (only the agent user '%s'%s)", req,
                     u->name, g_allow_root ? " or root" : "");
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ privileges */

static void close_from(int lowfd) {
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0) return;
    struct rlimit rl;
    long max = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                rl.rlim_cur < 65536) ? (long)rl.rlim_cur : 65536;
    for (long fd = lowfd; fd < max; fd++) close((int)fd);
}

static void reset_signals(void) {
    sigset_t none;
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* ------------------------------------------------------------------ /proc */
struct pinfo { pid_t pid, ppid, pgid, sid; char state; };

/* Parses /proc/PID/stat; comm (optional) receives the name between the parens. */
static int read_stat(pid_t pid, struct pinfo *pi, char *comm, size_t commlen) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
    if (!lp || !rp || rp < lp) return -1;
    if (comm) {
        size_t cl = (size_t)(rp - lp - 1);
        if (cl >= commlen) cl = commlen - 1;
        memcpy(comm, lp + 1, cl);
        comm[cl] = 0;
    }
    int ppid, pgid, sid;
    char state;
    if (sscanf(rp + 2, "%c %d %d %d", &state, &ppid, &pgid, &sid) != 4) return -1;
    pi->pid = pid;
    pi->ppid = ppid;
    pi->pgid = pgid;
    pi->sid = sid;
    pi->state = state;
    return 0;
}

/* Lists every process. Caller frees *out. Returns count or -1. */
static int list_procs(struct pinfo **out) {
    DIR *d = opendir("/proc");
    if (!d) return -1;
    size_t cap = 256, n = 0;
    struct pinfo *v = malloc(cap * sizeof *v);
    struct dirent *de;
    while (v && (de = readdir(d))) {
        long long pid;
        if (parse_ll(de->d_name, &pid) < 0) continue;
        if (n == cap) {
            struct pinfo *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) break;
            v = nv;
            cap *= 2;
        }
        if (read_stat((pid_t)pid, &v[n], NULL, 0) == 0) n++;
    }
    closedir(d);
    if (!v) return -1;
    *out = v;
    return (int)n;
}

static int cmp_pid(const void *a, const void *b) {
    pid_t x = ((const struct pinfo *)a)->pid, y = ((const struct pinfo *)b)->pid;
    return (x > y) - (x < y);
}

/* Marks in mark[] (1/0) the processes whose parent chain reaches `ancestor`. Sorts v by
 * pid; each chain is walked once (verdicts are memoised), so a bomb's deep or wide tree
 * costs O(n log n), not O(n^2) per level. */
static void mark_descendants(struct pinfo *v, int n, pid_t ancestor, char *mark) {
    memset(mark, 0, (size_t)n);
    int *path = malloc(((size_t)n + 1) * sizeof *path);
    if (!path) return;
    qsort(v, (size_t)n, sizeof *v, cmp_pid);
    for (int i = 0; i < n; i++) {
        int len = 0, j = i;
        char verdict = 2; /* 1 descendant, 2 not (0: not decided yet) */
        while (len < n) { /* bounded: a stale snapshot may hold a cycle */
            if (mark[j]) { verdict = mark[j]; break; }
            path[len++] = j;
            if (v[j].ppid == ancestor && v[j].pid != ancestor) { verdict = 1; break; }
            if (v[j].pid == ancestor || v[j].ppid <= 0) break;
            struct pinfo key = {.pid = v[j].ppid};
            struct pinfo *parent = bsearch(&key, v, (size_t)n, sizeof *v, cmp_pid);
            if (!parent) break;
            j = (int)(parent - v);
        }
        for (int k = 0; k < len; k++) mark[path[k]] = verdict;
    }
    for (int i = 0; i < n; i++) mark[i] = (mark[i] == 1);
    free(path);
}

static int proc_uid(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    int uid = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Uid:", 4) == 0) { uid = atoi(line + 4); break; }
    }
    fclose(f);
    return uid;
}

/* Sends one 'r' process record: 1 sent, 0 process gone meanwhile, -1 write error. */
static int send_process(int fd, const struct pinfo *pi) {
    static struct rec r;
    struct pinfo now;
    char comm[64], path[64], cmd[MAX_CMDLINE];
    if (read_stat(pi->pid, &now, comm, sizeof comm) < 0) return 0; /* gone meanwhile */
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pi->pid);
    ssize_t n = 0;
    int cfd = open(path, O_RDONLY | O_CLOEXEC);
    if (cfd >= 0) {
        n = read(cfd, cmd, sizeof cmd);
        close(cfd);
        if (n < 0) n = 0;
    }
    for (ssize_t i = 0; i < n; i++) if (cmd[i] == 0) cmd[i] = ' ';
    while (n > 0 && cmd[n - 1] == ' ') n--;
    r.len = 0;
    rec_int(&r, 'p', now.pid);
    rec_int(&r, 'P', now.ppid);
    rec_int(&r, 'g', now.pgid);
    rec_int(&r, 's', now.sid);
    rec_int(&r, 'u', proc_uid(pi->pid));
    rec_str(&r, 'c', comm);
    rec_bytes(&r, 'l', cmd, (size_t)n);
    rec_bytes(&r, 'S', &now.state, 1);
    return send_frame(fd, 'r', r.buf, r.len) < 0 ? -1 : 1;
}

/* ------------------------------------------------------------------ pid exhaustion
 * A fork bomb whose processes outlive their command can take every pid the container
 * may have; then we cannot fork a handler or a command, not even a `kill`. That is the
 * agent's doing, not a harness failure. Killing needs no fork: we SIGKILL every process
 * of the agent's uid below the main server (every process the agent has is our
 * descendant: handlers and the main server are subreapers), never init, never ourselves,
 * never a root process (handlers, a command child before it drops privileges). */

/* Whether pid is one of the live handlers (see g_shared). */
static pid_t g_warm_pid = -1; /* the warm bash zygote (see "warm bash") */
static int g_warm_fd = -1;    /* its control socket (handlers inherit it) */

static int is_handler(pid_t pid) {
    for (int i = 0; i < MAX_HANDLERS; i++)
        if (g_shared->handlers[i] == pid) return 1;
    return 0;
}

static void handler_slot(pid_t old, pid_t new) {
    for (int i = 0; i < MAX_HANDLERS; i++)
        if (g_shared->handlers[i] == old) { g_shared->handlers[i] = new; return; }
}

/* Takes the count of killed agent processes not yet told to the agent. */
static int take_reclaimed(void) { return __atomic_exchange_n(&g_shared->reclaimed, 0, __ATOMIC_SEQ_CST); }

/* The main server's reaping: every exited child, forgetting handlers that are gone. */
static void main_reap(void) {
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
        handler_slot(p, 0);
        if (p == g_warm_pid) { /* gone: every command spawns cold from now on */
            logmsg("warm bash: the zygote ended (status %d)", st);
            g_warm_pid = -1;
            close(g_warm_fd);
            g_warm_fd = -1;
        }
    }
}

/* SIGKILLs the agent's processes until none is left (bounded); returns how many. */
static int reclaim_pids(void) {
    if (!g_privileged || g_agent_uid == 0) return 0; /* cannot tell theirs from ours */
    int total = 0;
    long long end = now_ms() + 2000;
    for (int round = 0; round < 100 && now_ms() < end; round++) {
        struct pinfo *v;
        int n = list_procs(&v), hits = 0;
        if (n < 0) break;
        char *mark = malloc((size_t)n + 1);
        if (mark) {
            mark_descendants(v, n, g_main_pid, mark);
            for (int i = 0; i < n; i++) {
                if (!mark[i] || v[i].state == 'Z' || v[i].state == 'X' || v[i].pid == getpid())
                    continue;
                if (proc_uid(v[i].pid) != (int)g_agent_uid) continue;
                if (kill(v[i].pid, SIGKILL) == 0) hits++;
            }
            free(mark);
        }
        free(v);
        if (getpid() == g_main_pid) main_reap();
        total += hits;
        if (hits == 0) break;
        usleep(2000);
    }
    logmsg("process limit reached: killed %d processes of uid %u", total, (unsigned)g_agent_uid);
    __atomic_add_fetch(&g_shared->reclaimed, total, __ATOMIC_SEQ_CST);
    return total;
}

/* fork(), and when the pids limit stops it: free the table, then retry for a while
 * (zombies of killed processes free their pids once reaped, by us or a handler). */
static pid_t fork_reclaiming(void) {
    pid_t pid = fork();
    if (pid >= 0 || errno != EAGAIN) return pid;
    reclaim_pids();
    for (int i = 0; i < 100; i++) {
        if (getpid() == g_main_pid) main_reap();
        pid = fork();
        if (pid >= 0 || errno != EAGAIN) return pid;
        usleep(5000);
    }
    errno = EAGAIN;
    return -1;
}

/* The agent-visible refusal: errno EAGAIN on the wire means exactly this. */
static void send_pid_limit(int conn, int killed) {
    char limit[48] = "";
    const char *files[] = {"/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"};
    for (int i = 0; i < 2 && !limit[0]; i++) {
        int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        char b[24];
        ssize_t n = fd >= 0 ? read(fd, b, sizeof b - 1) : -1;
        if (fd >= 0) close(fd);
        if (n <= 0) continue;
        b[n] = 0;
        b[strcspn(b, "\n")] = 0;
        long long v;
        if (parse_ll(b, &v) == 0) snprintf(limit, sizeof limit, " (%lld)", v);
    }
    send_error(conn, EAGAIN,
               "the command did not run: the sandbox's process limit%s is reached; %d processes "
               "of the agent's user were killed to free it; run the command again",
               limit, killed);
}

/* ------------------------------------------------------------------ the command tree */
struct cmd {
    pid_t root;
    int root_alive;
    int status;
    long long end_ns;
    pid_t keeper;      /* warm bash: the keeper the root is below (0: we are its parent) */
};

/* Reaps every exited child without blocking; records the root's status. */
static void reap(struct cmd *c) {
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
        if (c && p == c->root && c->root_alive) {
            c->root_alive = 0;
            c->status = st;
            c->end_ns = now_ns();
        }
    }
}

/* Whether any child (live or zombie) is left, without reaping it. */
static int have_children(void) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return !(waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD);
}

/* SIGKILLs every live descendant of this handler (or of the command's keeper, for a warm
 * bash); returns how many were signalled. */
static int kill_descendants(pid_t below) {
    struct pinfo *v;
    if (!below && !have_children()) return 0; /* nothing below us */
    int n = list_procs(&v), hits = 0;
    if (n < 0) return 0;
    char *mark = malloc((size_t)n + 1);
    if (mark) {
        mark_descendants(v, n, below ? below : getpid(), mark);
        for (int i = 0; i < n; i++) {
            if (mark[i] && v[i].state != 'Z' && v[i].state != 'X') {
                kill(v[i].pid, SIGKILL);
                hits++;
            }
        }
        free(mark);
    }
    free(v);
    return hits;
}

/* Kills the command's process group and every descendant, until none is left. */
static void kill_tree(struct cmd *c) {
    if (c->root_alive) kill(-c->root, SIGKILL);
    for (int round = 0; round < 200; round++) {
        int hits = kill_descendants(c->keeper);
        reap(c);
        if (hits == 0) break;
        usleep(1000);
    }
}

static void set_nonblock(int fd);
/* ------------------------------------------------------------------ syscall observation
 * Every command runs under a seccomp filter (installed by the command child, after it
 * dropped its privileges and set no_new_privs, right before exec; it cannot be removed
 * and every descendant inherits it) whose user-notification listener is the main server:
 *   - the syscalls of the deny list (--observe-deny NAME:NR,..., the host's profile: the
 *     container's own profile answers them with TRACE, i.e. ENOSYS for any process not
 *     under this filter), socket() of a refused family and clone() with namespace flags
 *     are recorded with their arguments and refused with EPERM;
 *   - execve/execveat (path, argv), connect/bind/sendto/sendmsg/sendmmsg (the address),
 *     listen, setrlimit and prlimit64 with a new limit are recorded and let through.
 * Arguments in the target's memory are read through /proc/PID/mem with the file-system
 * ids of the agent (ptrace access rules: same uid, dumpable; no CAP_SYS_PTRACE needed);
 * SECCOMP_IOCTL_NOTIF_ID_VALID is checked after the reads. What is read for a syscall that
 * goes on is an observation only (another thread may change the memory before the kernel
 * reads it); a refused syscall does not run at all. If the listener is gone, notified
 * syscalls fail with ENOSYS: the denials hold.
 * Records (see rec layout in the protocol section) go to a shared ring; each EXEC reply
 * takes everything recorded so far ('y' frames). At most OBS_PER_TREE records per command
 * tree are kept and the ring is bounded: the rest is counted ('D' in the EXEC result). */
#define OBS_PER_TREE 512
#define MAX_TREES 1024
#define MAX_DENY 200
#define OBS_MAX_ARGV 4096        /* bytes of argv (NUL separated) read per execve */
#define OBS_MAX_ARGS 256

struct sc_data { int nr; uint32_t arch; uint64_t ip; uint64_t args[6]; };
struct sc_notif { uint64_t id; uint32_t pid; uint32_t flags; struct sc_data data; };
struct sc_resp { uint64_t id; int64_t val; int32_t error; uint32_t flags; };
struct sc_filter { uint16_t code; uint8_t jt, jf; uint32_t k; };
struct sc_fprog { unsigned short len; struct sc_filter *filter; };
#define SC_IOCTL_RECV 0xc0502100UL   /* _IOWR('!', 0, struct seccomp_notif) */
#define SC_IOCTL_SEND 0xc0182101UL   /* _IOWR('!', 1, struct seccomp_notif_resp) */
#define SC_IOCTL_ID_VALID 0x40082102UL /* _IOW('!', 2, __u64) */
#define SC_SET_MODE_FILTER 1
#define SC_GET_NOTIF_SIZES 3
#define SC_FLAG_NEW_LISTENER 8
#define SC_RET_ALLOW 0x7fff0000U
#define SC_RET_NOTIFY 0x7fc00000U
#define SC_CONTINUE 1
#define AUDIT_X86_64 0xc000003eU
#ifndef SYS_seccomp
#define SYS_seccomp 317
#endif
/* Namespace flags of clone(2) (the profile's CLONE_NAMESPACE_FLAGS). */
#define NS_FLAGS 0x7e020000U
#ifndef CLONE_FILES
#define CLONE_FILES 0x00000400
#endif

static int g_deny_nr[MAX_DENY];
static char *g_deny_name[MAX_DENY];
static int g_ndeny;
static int g_obs_chan[2] = {-1, -1}; /* [0] main server, [1] inherited by command children */

/* The allowed syscalls that are recorded (their number, name). */
static const struct { int nr; const char *name; } OBSERVED[] = {
    {59, "execve"}, {322, "execveat"}, {42, "connect"}, {49, "bind"}, {50, "listen"},
    {44, "sendto"}, {46, "sendmsg"}, {307, "sendmmsg"}, {160, "setrlimit"},
    {302, "prlimit64"}, {41, "socket"}, {56, "clone"},
};
#define NR_EXECVE 59
#define NR_EXECVEAT 322
#define NR_SOCKET 41
#define NR_CLONE 56
#define NR_SENDTO 44
#define NR_SENDMSG 46
#define NR_SENDMMSG 307
#define NR_PRLIMIT 302

static const char *sc_name(int nr) {
    for (int i = 0; i < g_ndeny; i++) if (g_deny_nr[i] == nr) return g_deny_name[i];
    for (size_t i = 0; i < sizeof OBSERVED / sizeof OBSERVED[0]; i++)
        if (OBSERVED[i].nr == nr) return OBSERVED[i].name;
    return "?";
}

/* --observe-deny NAME:NR,NAME:NR,... */
static int parse_deny(const char *arg) {
    char *copy = strdup(arg), *save = NULL;
    if (!copy) return -1;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        long long nr;
        if (!colon || colon == tok || g_ndeny >= MAX_DENY) return -1;
        *colon = 0;
        if (parse_ll(colon + 1, &nr) < 0 || nr > 1023) return -1;
        if (nr == NR_SOCKET || nr == NR_CLONE) return -1; /* argument-checked below */
        g_deny_nr[g_ndeny] = (int)nr;
        g_deny_name[g_ndeny++] = tok;
    }
    return 0;
}

/* A tiny assembler for the filter: jumps name labels, resolved at the end. */
enum { L_NEXT = -1, L_ALLOW = 0, L_NOTIFY, L_SOCK, L_NL, L_CLONE, L_SENDTO, L_SENDTO_HI,
       L_PRLIM, L_PRLIM_HI, L_COUNT };
struct asm_ins { uint16_t code; int jt, jf; uint32_t k; };
static struct asm_ins g_prog[64 + MAX_DENY];
static int g_plen, g_labels[L_COUNT];
static void emit(uint16_t code, uint32_t k, int jt, int jf) {
    g_prog[g_plen++] = (struct asm_ins){code, jt, jf, k};
}
static void label(int l) { g_labels[l] = g_plen; }
#define LD_ABS 0x20
#define JEQ 0x15
#define JGT 0x25
#define JSET 0x45
#define RET 0x06
#define ARG_LO(i) (16 + 8 * (i))
#define ARG_HI(i) (20 + 8 * (i))

/* Builds the command filter into out (returns its length or -1). */
static int build_filter(struct sc_filter *out, int max) {
    g_plen = 0;
    emit(LD_ABS, 4, L_NEXT, L_NEXT);                 /* arch */
    emit(JEQ, AUDIT_X86_64, L_NEXT, L_ALLOW);        /* other ABIs: the profile refuses */
    emit(LD_ABS, 0, L_NEXT, L_NEXT);                 /* nr */
    emit(JGT, 0x3fffffff, L_ALLOW, L_NEXT);          /* x32: the profile refuses */
    emit(JEQ, NR_SOCKET, L_SOCK, L_NEXT);
    emit(JEQ, NR_CLONE, L_CLONE, L_NEXT);
    emit(JEQ, NR_SENDTO, L_SENDTO, L_NEXT);
    emit(JEQ, NR_PRLIMIT, L_PRLIM, L_NEXT);
    for (size_t i = 0; i < sizeof OBSERVED / sizeof OBSERVED[0]; i++) {
        int nr = OBSERVED[i].nr;
        if (nr == NR_SOCKET || nr == NR_CLONE || nr == NR_SENDTO || nr == NR_PRLIMIT) continue;
        emit(JEQ, (uint32_t)nr, L_NOTIFY, L_NEXT);
    }
    for (int i = 0; i < g_ndeny; i++) emit(JEQ, (uint32_t)g_deny_nr[i], L_NOTIFY, L_NEXT);
    emit(RET, SC_RET_ALLOW, L_NEXT, L_NEXT);
    label(L_SOCK);                                   /* socket: the allowed families */
    emit(LD_ABS, ARG_LO(0), L_NEXT, L_NEXT);
    emit(JEQ, 1, L_ALLOW, L_NEXT);
    emit(JEQ, 2, L_ALLOW, L_NEXT);
    emit(JEQ, 10, L_ALLOW, L_NEXT);
    emit(JEQ, 16, L_NL, L_NOTIFY);
    label(L_NL);                                     /* netlink: route and sock_diag */
    emit(LD_ABS, ARG_LO(2), L_NEXT, L_NEXT);
    emit(JEQ, 0, L_ALLOW, L_NEXT);
    emit(JEQ, 4, L_ALLOW, L_NOTIFY);
    label(L_CLONE);
    emit(LD_ABS, ARG_LO(0), L_NEXT, L_NEXT);
    emit(JSET, NS_FLAGS, L_NOTIFY, L_ALLOW);
    label(L_SENDTO);                                 /* sendto with a destination */
    emit(LD_ABS, ARG_LO(4), L_NEXT, L_NEXT);
    emit(JEQ, 0, L_SENDTO_HI, L_NOTIFY);
    label(L_SENDTO_HI);
    emit(LD_ABS, ARG_HI(4), L_NEXT, L_NEXT);
    emit(JEQ, 0, L_ALLOW, L_NOTIFY);
    label(L_PRLIM);                                  /* prlimit64 setting a limit */
    emit(LD_ABS, ARG_LO(2), L_NEXT, L_NEXT);
    emit(JEQ, 0, L_PRLIM_HI, L_NOTIFY);
    label(L_PRLIM_HI);
    emit(LD_ABS, ARG_HI(2), L_NEXT, L_NEXT);
    emit(JEQ, 0, L_ALLOW, L_NOTIFY);
    label(L_ALLOW);
    emit(RET, SC_RET_ALLOW, L_NEXT, L_NEXT);
    label(L_NOTIFY);
    emit(RET, SC_RET_NOTIFY, L_NEXT, L_NEXT);
    if (g_plen > max) return -1;
    for (int i = 0; i < g_plen; i++) {
        int jt = g_prog[i].jt == L_NEXT ? 0 : g_labels[g_prog[i].jt] - i - 1;
        int jf = g_prog[i].jf == L_NEXT ? 0 : g_labels[g_prog[i].jf] - i - 1;
        if (jt < 0 || jt > 255 || jf < 0 || jf > 255) return -1;
        out[i] = (struct sc_filter){g_prog[i].code, (uint8_t)jt, (uint8_t)jf, g_prog[i].k};
    }
    return g_plen;
}

/* What comes with a listener (warmbash.c sends it too: keep the two in step). warm: the
 * command is a warm bash (no exec of its own to skip, see obs_handle). */
struct obs_hello { int32_t pid, pad; int64_t serial; int32_t warm, pad2; };

/* Sends the listener fd to the main server (over chan) with the command's pid and serial. */
static int send_listener(int chan, int lfd, pid_t pid, long long serial) {
    struct obs_hello msg = {pid, 0, serial, 0, 0};
    struct iovec io = {&msg, sizeof msg};
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    memset(&c, 0, sizeof c);
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = c.buf;
    m.msg_controllen = sizeof c.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &lfd, sizeof lfd);
    ssize_t r;
    do r = sendmsg(chan, &m, MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
}

/* ---- the listener side (main server only) ---- */
struct tree { int fd; pid_t root; long long serial; int root_exec_seen, recorded; };
static struct tree g_trees[MAX_TREES];
static int g_ntrees;
static size_t g_notif_size = sizeof(struct sc_notif);

/* Takes the listeners the command children sent. */
static void obs_accept(void) {
    for (;;) {
        struct obs_hello msg;
        struct iovec io = {&msg, sizeof msg};
        union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = &io;
        m.msg_iovlen = 1;
        m.msg_control = c.buf;
        m.msg_controllen = sizeof c.buf;
        ssize_t r = recvmsg(g_obs_chan[0], &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (r < 0) return;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        if (r != (ssize_t)sizeof msg || !cm || cm->cmsg_type != SCM_RIGHTS) {
            if (cm && cm->cmsg_type == SCM_RIGHTS) { int fd; memcpy(&fd, CMSG_DATA(cm), sizeof fd); close(fd); }
            continue;
        }
        int fd;
        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
        if (g_ntrees >= MAX_TREES) {
            /* Closing it makes the command's exec fail with ENOSYS: never unobserved. */
            logmsg("too many live command trees (%d): refusing one", MAX_TREES);
            close(fd);
            continue;
        }
        g_trees[g_ntrees++] = (struct tree){fd, msg.pid, msg.serial, msg.warm ? 1 : 0, 0};
    }
}

static void obs_drop_tree(int i) {
    close(g_trees[i].fd);
    g_trees[i] = g_trees[--g_ntrees];
}

/* Opens the target's memory with the agent's file-system ids (ptrace access check). */
static int open_mem(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
    if (!g_privileged) return open(path, O_RDONLY | O_CLOEXEC);
    uid_t ids[2] = {g_agent_uid, 0};
    for (int i = 0; i < (g_allow_root ? 2 : 1); i++) {
        uid_t old_u = (uid_t)setfsuid(ids[i]);
        gid_t old_g = (gid_t)setfsgid(i == 0 ? g_agent_gid : 0);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        setfsgid(old_g);
        setfsuid(old_u);
        if (fd >= 0) return fd;
    }
    return -1;
}

/* Reads a NUL-terminated string at addr into out (at most max-1 bytes); its length, or -1. */
static ssize_t read_str(int mem, uint64_t addr, char *out, size_t max) {
    size_t got = 0;
    while (got + 1 < max) {
        size_t want = max - 1 - got < 256 ? max - 1 - got : 256;
        ssize_t n = pread(mem, out + got, want, (off_t)(addr + got));
        if (n <= 0) { if (got == 0) return -1; break; }
        void *z = memchr(out + got, 0, (size_t)n);
        if (z) { got = (size_t)((char *)z - out); out[got] = 0; return (ssize_t)got; }
        got += (size_t)n;
    }
    out[got] = 0;
    return (ssize_t)got;
}

/* Appends one record to the ring, or counts it as dropped. */
static void ring_put(const unsigned char *p, uint32_t len) {
    struct shared *s = g_shared;
    unsigned long long head = __atomic_load_n(&s->ring_head, __ATOMIC_ACQUIRE);
    unsigned long long tail = s->ring_tail;
    if (tail - head + 4 + len > OBS_RING) { __atomic_add_fetch(&s->dropped, 1, __ATOMIC_SEQ_CST); return; }
    unsigned char hdr[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len};
    for (int i = 0; i < 4; i++) s->ring[(tail + (unsigned)i) % OBS_RING] = hdr[i];
    for (uint32_t i = 0; i < len; i++) s->ring[(tail + 4 + i) % OBS_RING] = p[i];
    __atomic_store_n(&s->ring_tail, tail + 4 + len, __ATOMIC_RELEASE);
}

/* Whether the notified syscall is one we refuse (EPERM). */
static int is_denied(const struct sc_data *d) {
    if (d->nr == NR_SOCKET || d->nr == NR_CLONE) return 1; /* the filter only notifies bad ones */
    for (int i = 0; i < g_ndeny; i++) if (g_deny_nr[i] == d->nr) return 1;
    return 0;
}

/* Serves one notification of tree t: record, then answer. */
static void obs_handle(struct tree *t) {
    static unsigned char nbuf[512];
    static struct rec r;
    static char argv[OBS_MAX_ARGV + 1], str[PATH_MAX + 1];
    memset(nbuf, 0, g_notif_size);
    if (ioctl(t->fd, SC_IOCTL_RECV, nbuf) < 0) return; /* ENOENT: the caller is gone */
    struct sc_notif *n = (struct sc_notif *)nbuf;
    const struct sc_data *d = &n->data;
    int denied = is_denied(d);
    struct sc_resp resp = {n->id, 0, 0, 0};
    if (denied) resp.error = -EPERM;
    else resp.flags = SC_CONTINUE;
    int record = 1;
    if (d->nr == NR_EXECVE && (pid_t)n->pid == t->root && !t->root_exec_seen) {
        t->root_exec_seen = 1; /* the command itself: the host sent that argv */
        record = 0;
    }
    if (record && t->recorded >= OBS_PER_TREE) {
        __atomic_add_fetch(&g_shared->dropped, 1, __ATOMIC_SEQ_CST);
        record = 0;
    }
    if (record) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        char args[6 * 24];
        snprintf(args, sizeof args, "%llu %llu %llu %llu %llu %llu",
                 (unsigned long long)d->args[0], (unsigned long long)d->args[1],
                 (unsigned long long)d->args[2], (unsigned long long)d->args[3],
                 (unsigned long long)d->args[4], (unsigned long long)d->args[5]);
        r.len = 0;
        rec_int(&r, 'q', t->serial);
        rec_int(&r, 'p', (long long)n->pid);
        rec_int(&r, 'n', d->nr);
        rec_str(&r, 'N', sc_name(d->nr));
        rec_int(&r, 'd', denied);
        rec_str(&r, 'A', args);
        rec_int(&r, 'T', (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        int mem = -1, unreadable = 0, truncated = 0;
        uint64_t path_at = 0, argv_at = 0, addr_at = 0, addr_len = 0, blob_at = 0;
        uint64_t strs[3] = {0, 0, 0};
        int nstrs = 0;
        switch (d->nr) {
        case NR_EXECVE: path_at = d->args[0]; argv_at = d->args[1]; break;
        case NR_EXECVEAT: path_at = d->args[1]; argv_at = d->args[2]; break;
        case 42: case 49: addr_at = d->args[1]; addr_len = d->args[2]; break; /* connect, bind */
        case NR_SENDTO: addr_at = d->args[4]; addr_len = d->args[5]; break;
        case NR_SENDMSG: case NR_SENDMMSG: blob_at = d->args[1]; break; /* msg_name, msg_namelen */
        case 160: blob_at = d->args[1]; break; /* setrlimit */
        case NR_PRLIMIT: blob_at = d->args[2]; break;
        case 165: strs[0] = d->args[0]; strs[1] = d->args[1]; strs[2] = d->args[2]; nstrs = 3; break; /* mount */
        case 166: case 161: case 167: strs[0] = d->args[0]; nstrs = 1; break; /* umount2, chroot, swapon */
        case 155: strs[0] = d->args[0]; strs[1] = d->args[1]; nstrs = 2; break; /* pivot_root */
        default: break;
        }
        int needs_mem = path_at || argv_at || addr_at || blob_at || nstrs;
        if (needs_mem && (mem = open_mem((pid_t)n->pid)) < 0) unreadable = 1;
        if (mem >= 0) {
            if (path_at) {
                ssize_t k = read_str(mem, path_at, str, sizeof str);
                if (k >= 0) rec_bytes(&r, 'P', str, (size_t)k); else unreadable = 1;
            }
            if (argv_at) {
                size_t used = 0;
                for (int i = 0; i < OBS_MAX_ARGS; i++) {
                    uint64_t ptr;
                    if (pread(mem, &ptr, sizeof ptr, (off_t)(argv_at + 8 * (uint64_t)i)) != (ssize_t)sizeof ptr) { unreadable = 1; break; }
                    if (!ptr) break;
                    if (used >= OBS_MAX_ARGV) { truncated = 1; break; }
                    ssize_t k = read_str(mem, ptr, argv + used, OBS_MAX_ARGV + 1 - used);
                    if (k < 0) { unreadable = 1; break; }
                    used += (size_t)k + 1;
                    if (i == OBS_MAX_ARGS - 1) truncated = 1;
                }
                if (used > OBS_MAX_ARGV) { used = OBS_MAX_ARGV; truncated = 1; }
                rec_bytes(&r, 'v', argv, used);
            }
            if (blob_at && (d->nr == NR_SENDMSG || d->nr == NR_SENDMMSG)) {
                uint64_t hdr[2]; /* msg_name, msg_namelen (first message of sendmmsg) */
                if (pread(mem, hdr, sizeof hdr, (off_t)blob_at) != (ssize_t)sizeof hdr) unreadable = 1;
                else if (!hdr[0]) record = 0; /* no destination: nothing to say */
                else { addr_at = hdr[0]; addr_len = (uint32_t)hdr[1]; }
                blob_at = 0;
            }
            if (addr_at) {
                unsigned char sa[128];
                size_t want = addr_len < sizeof sa ? (size_t)addr_len : sizeof sa;
                ssize_t k = pread(mem, sa, want, (off_t)addr_at);
                if (k > 0) rec_bytes(&r, 'S', sa, (size_t)k); else unreadable = 1;
            }
            if (blob_at) {
                unsigned char b[16];
                if (pread(mem, b, sizeof b, (off_t)blob_at) == (ssize_t)sizeof b) rec_bytes(&r, 'B', b, sizeof b);
                else unreadable = 1;
            }
            if (nstrs) {
                size_t used = 0;
                for (int i = 0; i < nstrs; i++) {
                    ssize_t k = strs[i] ? read_str(mem, strs[i], argv + used, 1024) : 0;
                    if (k < 0) k = 0;
                    if (!strs[i]) argv[used] = 0;
                    used += (size_t)k + 1;
                }
                rec_bytes(&r, 'v', argv, used);
            }
            close(mem);
        }
        if (unreadable) rec_int(&r, 'u', 1);
        if (truncated) rec_int(&r, 'k', 1);
        /* The memory read means something only if the caller is still in this syscall. */
        uint64_t id = n->id;
        if (record && ioctl(t->fd, SC_IOCTL_ID_VALID, &id) == 0) {
            ring_put(r.buf, (uint32_t)r.len);
            t->recorded++;
        }
    }
    ioctl(t->fd, SC_IOCTL_SEND, &resp); /* ENOENT: the caller died meanwhile */
}

/* Sets up the registration channel and the notification size (main server, at start). */
static void obs_init(void) {
    struct { uint16_t notif, resp, data; } sizes;
    if (syscall(SYS_seccomp, SC_GET_NOTIF_SIZES, 0, &sizes) == 0 && sizes.notif > g_notif_size) {
        if (sizes.notif > 512) { logmsg("seccomp notification too large (%u)", sizes.notif); return; }
        g_notif_size = sizes.notif;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, g_obs_chan) < 0) {
        logmsg("syscall observation off: socketpair: %s", strerror(errno));
        g_obs_chan[0] = g_obs_chan[1] = -1;
        return;
    }
    set_nonblock(g_obs_chan[0]);
}

/* Copies every record out of the ring (an EXEC handler, before its result). Caller frees. */
static unsigned char *ring_take(size_t *len) {
    struct shared *s = g_shared;
    while (__atomic_exchange_n(&s->ring_lock, 1, __ATOMIC_ACQUIRE)) usleep(50);
    unsigned long long head = s->ring_head;
    unsigned long long tail = __atomic_load_n(&s->ring_tail, __ATOMIC_ACQUIRE);
    size_t n = (size_t)(tail - head);
    unsigned char *out = n ? malloc(n) : NULL;
    if (out) {
        for (size_t i = 0; i < n; i++) out[i] = s->ring[(head + i) % OBS_RING];
        __atomic_store_n(&s->ring_head, tail, __ATOMIC_RELEASE);
    } else {
        n = 0;
    }
    __atomic_store_n(&s->ring_lock, 0, __ATOMIC_RELEASE);
    *len = n;
    return out;
}

/* Sends the ring's records as 'y' frames; returns how many, or -1 on a write error. */
static int send_syscalls(int conn) {
    size_t len, pos = 0;
    unsigned char *buf = ring_take(&len);
    int sent = 0;
    while (pos + 4 <= len) {
        uint32_t n = ((uint32_t)buf[pos] << 24) | ((uint32_t)buf[pos + 1] << 16) | ((uint32_t)buf[pos + 2] << 8) | buf[pos + 3];
        pos += 4;
        if (pos + n > len) break;
        if (send_frame(conn, 'y', buf + pos, n) < 0) { free(buf); return -1; }
        pos += n;
        sent++;
    }
    free(buf);
    return sent;
}

/* ------------------------------------------------------------------ EXEC */
static const char *const BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static int env_overridden(char **env, int envc, const char *name, size_t nlen) {
    for (int i = 0; i < envc; i++)
        if (strncmp(env[i], name, nlen) == 0 && env[i][nlen] == '=') return 1;
    return 0;
}

/* ------------------------------------------------------------------ spawn
 * The command child is cloned with CLONE_VM and a stack of its own: no page tables are
 * copied (most of what fork cost), the handler's memory is shared until the child's
 * execve. So the child runs nothing but system calls (made directly: no locks, no
 * malloc, no stdio, no libc state written, not even errno) on data the
 * handler prepared before the clone (struct spawn), then execs. The handler is not
 * suspended (no CLONE_VFORK): it waits on a close-on-exec pipe, at most until the
 * command's deadline, so a child stopped before its exec (once it has the agent's uid the
 * agent may signal it) cannot hang the handler: it is killed. The handler touches nothing
 * the child uses until that pipe says "exec'd" (EOF: the new program has its own memory)
 * or "failed" (a stage and errno, then the child exits), or the child is dead.
 * While the child has the agent's ids it still shares the handler's memory; that memory is
 * not dumpable (the kernel clears the flag when the child's ids change, before the new ids
 * are visible), so no agent process can read or write it (/proc/PID/mem and
 * process_vm_writev need ptrace access, ptrace needs CAP_SYS_PTRACE then). */
enum { SP_OK = 0, SP_DUP, SP_PRIV, SP_HOME, SP_HOME_QUIET, SP_CWD, SP_RESOLVE, SP_OBSERVE, SP_EXEC };

struct spawn {
    const struct user *u;
    char *const *argv;
    char *const *envp;
    const char *search;              /* the PATH argv[0] is looked up in */
    const char *cwd;                 /* NULL or "": the home (or /) */
    int in_fd, out_fd, err_fd;
    int obs_fd;                      /* the main server's channel, -1: not observed */
    int report_fd;
    long max_fd;                     /* for closing without close_range */
    struct sc_fprog prog;
    long long serial;
    int helper_sync;                 /* the listener helper's pipe (read end) */
    pid_t pid;                       /* the child's own pid (for the listener's record) */
    char resolved[PATH_MAX];
};

/* LC_CTYPE=C.UTF-8 in the base environment, only where that locale exists (see
 * locale_init). */
static int g_utf8_ctype;

/* Filter of every observed command: built once (at start) from the deny list. */
static struct sc_filter g_filter[64 + MAX_DENY];
static int g_filter_len = -1;

/* The child's system calls: made directly (x86_64), so that no libc state is written --
 * not even errno, which lives in the thread area the child shares with the handler. The
 * error of the last failed call is kept in g_spawn_err, which only the child (and its
 * listener helper, whose errors nobody reads) writes and reads. */
static long g_spawn_err;
#if defined(__x86_64__)
static long raw_call(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    if (ret < 0 && ret > -4096) { g_spawn_err = -ret; return -1; }
    return ret;
}
#else
static long raw_call(long n, long a, long b, long c, long d, long e, long f) {
    long ret = syscall(n, a, b, c, d, e, f);
    if (ret < 0) g_spawn_err = errno;
    return ret;
}
#endif
#define RAW_(n, a, b, c, d, e, f, ...) \
    raw_call((long)(n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
#define RAW(...) RAW_(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)
#define SP_ERR() (g_spawn_err ? (int)g_spawn_err : EPERM)

static void spawn_fail(const struct spawn *s, int stage, long err, int code) {
    int msg[2] = {stage, (int)err};
    RAW(SYS_write, s->report_fd, msg, sizeof msg);
    RAW(SYS_exit_group, code);
    for (;;) {}
}


/* In the command child: become u with no capabilities whatsoever (system calls only).
 * Returns -1 (the error in g_spawn_err). */
static int spawn_drop_privileges(const struct user *u) {
    if (g_privileged) {
        if (RAW(SYS_setgroups, 0, NULL) < 0) return -1;
        if (RAW(SYS_setresgid, u->gid, u->gid, u->gid) < 0) return -1;
        for (int cap = 0; cap < 64; cap++) {
            if (RAW(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
                if (g_spawn_err == EINVAL) break;
                return -1;
            }
        }
        RAW(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        if (RAW(SYS_prctl, PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return -1;
        if (RAW(SYS_setresuid, u->uid, u->uid, u->uid) < 0) return -1;
        /* Switching away from uid 0 clears permitted/effective; clear every set
         * explicitly anyway (needed when the target is root itself), then verify. */
        struct cap_header h = {CAP_VERSION_3, 0};
        struct cap_data d[2] = {{0, 0, 0}, {0, 0, 0}};
        if (RAW(SYS_capset, &h, d) < 0) return -1;
        uid_t r = 1, e = 1, sv = 1;
        if (RAW(SYS_getresuid, &r, &e, &sv) < 0 || r != u->uid || e != u->uid || sv != u->uid) {
            g_spawn_err = EPERM;
            return -1;
        }
        h.pid = 0;
        if (RAW(SYS_capget, &h, d) < 0) return -1;
        for (int i = 0; i < 2; i++)
            if (d[i].effective || d[i].permitted || d[i].inheritable) { g_spawn_err = EPERM; return -1; }
    }
    return RAW(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -1 : 0;
}

/* The program execvp would run for argv[0] (PATH lookup done here, so that the command's
 * own exec is a single execve: the listener skips exactly that one). System calls only;
 * it runs after the chdir and as the agent (faccessat checks the real ids). */
static const char *spawn_resolve(struct spawn *s) {
    const char *name = s->argv[0];
    size_t nl = strlen(name);
    if (memchr(name, '/', nl)) return name;
    int eacces = 0;
    for (const char *p = s->search; p && *p;) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        if (dl + 1 + nl < sizeof s->resolved) {
            memcpy(s->resolved, p, dl);
            size_t at = dl;
            if (dl) s->resolved[at++] = '/';
            memcpy(s->resolved + at, name, nl + 1);
            struct stat st;
            if (RAW(SYS_newfstatat, AT_FDCWD, s->resolved, &st, 0) == 0 && S_ISREG(st.st_mode)) {
                if (RAW(SYS_faccessat, AT_FDCWD, s->resolved, X_OK, 0) == 0) return s->resolved;
                eacces = 1;
            }
        }
        if (!colon) break;
        p = colon + 1;
    }
    g_spawn_err = eacces ? EACCES : ENOENT;
    return NULL;
}

/* The listener helper (CLONE_VM|CLONE_FILES, not under the filter): waits for the
 * listener's fd number, forwards it to the main server, ends. */
static int spawn_forward(void *arg) {
    struct spawn *s = arg;
    int fd = -1;
    /* It shares the handler's memory: it must not outlive the command child. */
    RAW(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if ((pid_t)RAW(SYS_getppid) != s->pid) return 1;
    if (RAW(SYS_read, s->helper_sync, &fd, sizeof fd) != (long)sizeof fd || fd < 0) return 1;
    return send_listener(s->obs_fd, fd, s->pid, s->serial) < 0 ? 2 : 0;
}

/* observe_self with system calls only: installs the filter, the helper hands the listener
 * over (once the filter is in place our own sendmsg would wait for the very listener it
 * carries). Returns -1 (the error in g_spawn_err). */
static int spawn_observe(struct spawn *s) {
    static char stack[16 * 1024] __attribute__((aligned(16)));
    int sync[2];
    if (s->prog.len == 0) { g_spawn_err = EINVAL; return -1; }
    if (RAW(SYS_pipe2, sync, O_CLOEXEC) < 0) return -1;
    s->helper_sync = sync[0];
    s->pid = (pid_t)RAW(SYS_getpid);
    pid_t helper = clone(spawn_forward, stack + sizeof stack, CLONE_VM | CLONE_FILES | SIGCHLD, s);
    if (helper < 0) { g_spawn_err = errno; RAW(SYS_close, sync[0]); RAW(SYS_close, sync[1]); return -1; }
    int lfd = (int)RAW(SYS_seccomp, SC_SET_MODE_FILTER, SC_FLAG_NEW_LISTENER, &s->prog);
    long e = g_spawn_err;
    long w = RAW(SYS_write, sync[1], &lfd, sizeof lfd);
    int st = 0;
    while (RAW(SYS_wait4, helper, &st, 0, NULL) < 0 && g_spawn_err == EINTR) {}
    RAW(SYS_close, sync[0]);
    RAW(SYS_close, sync[1]);
    if (lfd < 0) { g_spawn_err = e; return -1; }
    RAW(SYS_close, lfd);
    if (w != (long)sizeof lfd || !WIFEXITED(st) || WEXITSTATUS(st) != 0) { g_spawn_err = EPIPE; return -1; }
    return 0;
}

/* The command child (see "spawn"): never returns. */
static int spawn_child(void *arg) {
    struct spawn *s = arg;
    g_spawn_err = 0;
    RAW(SYS_setsid);
    /* Default dispositions and an empty mask (the kernel's sigaction: 8-byte mask). */
    struct { void *handler; unsigned long flags; void *restorer; unsigned long mask; } dfl = {0};
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) RAW(SYS_rt_sigaction, sig, &dfl, NULL, 8);
    unsigned long none = 0;
    RAW(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
    /* The report pipe and the channel go above the standard fds first, then 0-2, 3
     * (the channel, until the listener is handed over) and 4 (report, close-on-exec). */
    int rep = (int)RAW(SYS_fcntl, s->report_fd, F_DUPFD_CLOEXEC, 10);
    if (rep < 0) RAW(SYS_exit_group, 126);
    s->report_fd = rep;
    int obs = s->obs_fd >= 0 ? (int)RAW(SYS_fcntl, s->obs_fd, F_DUPFD_CLOEXEC, 10) : -1;
    if (s->obs_fd >= 0 && obs < 0) spawn_fail(s, SP_DUP, SP_ERR(), 126);
    if (RAW(SYS_dup3, s->in_fd, 0, 0) < 0 || RAW(SYS_dup3, s->out_fd, 1, 0) < 0 ||
        RAW(SYS_dup3, s->err_fd, 2, 0) < 0 || RAW(SYS_dup3, rep, 4, O_CLOEXEC) < 0)
        spawn_fail(s, SP_DUP, SP_ERR(), 126);
    s->report_fd = 4;
    if (obs >= 0) {
        if (RAW(SYS_dup3, obs, 3, O_CLOEXEC) < 0) spawn_fail(s, SP_DUP, SP_ERR(), 126);
        s->obs_fd = 3;
    } else {
        RAW(SYS_close, 3);
    }
    if (RAW(SYS_close_range, 5U, ~0U, 0) < 0)
        for (long fd = 5; fd < s->max_fd; fd++) RAW(SYS_close, fd);
    RAW(SYS_umask, 022);
    if (spawn_drop_privileges(s->u) < 0) spawn_fail(s, SP_PRIV, SP_ERR(), 126);
    if (s->cwd && *s->cwd) {
        /* A relative cwd is relative to the user's home (like read/write paths). */
        if (s->cwd[0] != '/' && RAW(SYS_chdir, s->u->home) < 0) spawn_fail(s, SP_HOME, SP_ERR(), 126);
        if (RAW(SYS_chdir, s->cwd) < 0) spawn_fail(s, SP_CWD, SP_ERR(), 126);
    } else if (RAW(SYS_chdir, s->u->home) < 0 && RAW(SYS_chdir, "/") < 0) {
        spawn_fail(s, SP_HOME_QUIET, SP_ERR(), 126);
    }
    const char *prog = spawn_resolve(s);
    if (!prog) spawn_fail(s, SP_RESOLVE, g_spawn_err, g_spawn_err == ENOENT ? 127 : 126);
    if (s->obs_fd >= 0) {
        if (spawn_observe(s) < 0) spawn_fail(s, SP_OBSERVE, SP_ERR(), 126);
        RAW(SYS_close, 3);
    }
    RAW(SYS_execve, prog, s->argv, s->envp);
    int e = SP_ERR();
    spawn_fail(s, SP_EXEC, e, e == ENOENT ? 127 : 126);
    return 126;
}

/* What the child could not do, on the command's stderr (the messages of the fork path). */
static void spawn_explain(const struct spawn *s, int stage, int e, int err_fd) {
    const char *name = s->argv[0];
    switch (stage) {
    case SP_PRIV: dprintf(err_fd, "sandbox-executor: cannot drop privileges: %s\n", strerror(e)); break;
    case SP_HOME: dprintf(err_fd, "sandbox-executor: cd %s: %s\n", s->u->home, strerror(e)); break;
    case SP_CWD: dprintf(err_fd, "sandbox-executor: cd %s: %s\n", s->cwd, strerror(e)); break;
    case SP_RESOLVE: dprintf(err_fd, "sandbox-executor: %s: %s\n", name, strerror(e)); break;
    case SP_OBSERVE:
        dprintf(err_fd, "sandbox-executor: cannot start the syscall observer: %s\n", strerror(e));
        break;
    case SP_EXEC:
        if (s->obs_fd >= 0 && e == ENOSYS)
            dprintf(err_fd, "sandbox-executor: %s: the syscall observer did not take the command\n", name);
        else
            dprintf(err_fd, "sandbox-executor: %s: %s\n", name, strerror(e));
        break;
    default: break; /* SP_DUP, SP_HOME_QUIET: exit 126 without a word, as before */
    }
}

/* Starts the command child; returns its pid (or -1 + errno, nothing started). Writes the
 * child's failure, if any, to err_fd (the write end of the command's stderr pipe, still
 * open here). *stalled: the child did not get to its exec before the deadline and was
 * killed. */
static pid_t spawn_command(struct spawn *s, long long deadline_ms, int err_fd, int *stalled) {
    static char stack[64 * 1024] __attribute__((aligned(16)));
    int rp[2];
    *stalled = 0;
    if (pipe2(rp, O_CLOEXEC) < 0) return -1;
    s->report_fd = rp[1];
    struct rlimit rl;
    s->max_fd = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                 rl.rlim_cur < 65536) ? (long)rl.rlim_cur : 65536;
    pid_t pid = clone(spawn_child, stack + sizeof stack, CLONE_VM | SIGCHLD, s);
    int e = errno;
    close(rp[1]);
    if (pid < 0) { close(rp[0]); errno = e; return -1; }
    int msg[2] = {0, 0};
    size_t got = 0;
    for (;;) {
        long long left = deadline_ms - now_ms();
        struct pollfd p = {rp[0], POLLIN, 0};
        int r = poll(&p, 1, left < 0 ? 0 : left > 1000 ? 1000 : (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0 && left > 0) continue;
        if (r <= 0) {
            /* Stopped (or starved) before its exec: it must be gone before we go on. */
            kill(pid, SIGKILL);
            siginfo_t si;
            while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR) {}
            *stalled = 1;
            break;
        }
        ssize_t n = read(rp[0], (char *)msg + got, sizeof msg - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; /* EOF: exec'd (or dead) */
        got += (size_t)n;
        if (got == sizeof msg) {
            /* The child exits right after its report: wait for it to let go of our memory. */
            siginfo_t si;
            while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR) {}
            spawn_explain(s, msg[0], msg[1], err_fd);
            break;
        }
    }
    close(rp[0]);
    return pid;
}
/* Fills the spawn for one EXEC (everything the child needs, prepared here: it only makes
 * system calls). The environment: the base entries unless the request names them, then
 * the request's. */
static void spawn_prepare(struct spawn *sp, struct request *rq, const struct user *u, int in_fd,
                          int out_fd, int err_fd, int obs_fd, long long serial) {
    static char buf[6][PATH_MAX + 16];
    static char *envp[MAX_ENV + 8];
    char *base[8];
    int nb = 0;
    snprintf(buf[0], sizeof buf[0], "PATH=%s", BASE_PATH);
    snprintf(buf[1], sizeof buf[1], "HOME=%s", u->home);
    snprintf(buf[2], sizeof buf[2], "USER=%s", u->name);
    snprintf(buf[3], sizeof buf[3], "LOGNAME=%s", u->name);
    snprintf(buf[4], sizeof buf[4], "SHELL=%s", u->shell);
    for (int i = 0; i < 5; i++) base[nb++] = buf[i];
    if (g_utf8_ctype) base[nb++] = "LC_CTYPE=C.UTF-8";
    base[nb++] = "TERM=dumb";
    int ne = 0;
    for (int i = 0; i < nb; i++) {
        size_t nl = strcspn(base[i], "=");
        if (!env_overridden(rq->env, rq->envc, base[i], nl)) envp[ne++] = base[i];
    }
    for (int i = 0; i < rq->envc; i++) envp[ne++] = rq->env[i];
    envp[ne] = NULL;
    rq->argv[rq->argc] = NULL;
    const char *search = BASE_PATH;
    for (int i = 0; i < ne; i++) if (strncmp(envp[i], "PATH=", 5) == 0) search = envp[i] + 5;
    *sp = (struct spawn){0};
    sp->u = u;
    sp->argv = rq->argv;
    sp->envp = envp;
    sp->search = search;
    sp->cwd = rq->cwd;
    sp->in_fd = in_fd;
    sp->out_fd = out_fd;
    sp->err_fd = err_fd;
    sp->obs_fd = obs_fd;
    sp->prog = (struct sc_fprog){(unsigned short)(g_filter_len > 0 ? g_filter_len : 0), g_filter};
    sp->serial = serial;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* ------------------------------------------------------------------ warm bash
 * `bash -c COMMAND` requests (the agent's bash tool) skip bash's start-up: a zygote bash
 * with our builtin (warmbash.c: how the zygote, its keepers and the command are made,
 * and why the agent cannot reach them) forks per command. Only where the result is the
 * command a cold spawn would run: argv exactly bash -c X, the agent's (non-root) user,
 * the environment the zygote was started with (--bash-env), X without NUL; anything
 * else, or a zygote that is gone, takes the cold spawn. Compiled in only with
 * SANDBOX_WARM_BASH (the builtin embedded at build time). */
#ifdef SANDBOX_WARM_BASH
__asm__(".section .rodata\n.balign 16\n.globl g_warm_so\ng_warm_so:\n.incbin \"" SANDBOX_WARM_BASH
        "\"\n.globl g_warm_so_end\ng_warm_so_end:\n.previous\n");
extern const unsigned char g_warm_so[], g_warm_so_end[];
#endif
#define WARM_MAGIC 0x5342574dU
#define WARM_MAX (128 * 1024)
struct warm_req {
    uint32_t magic, flags;
    int64_t serial;
    uint32_t uid, gid;
    uint32_t cwd_len, home_len, cmd_len, filter_len;
};
struct warm_rep { int32_t type, pid, status, err; int64_t utime_us, stime_us, maxrss_kb; };
static char *g_warm_env[MAX_ENV + 9];   /* the environment it runs with */
static char *g_bash_env[MAX_ENV];       /* --bash-env entries */
static int g_nbash_env;

/* A binary the agent cannot have replaced: root's, in root's directory, neither writable
 * by anyone else. */
static int root_owned(const char *path) {
    char dir[PATH_MAX];
    struct stat st;
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return 0;
    *slash = 0;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022)) return 0;
    if (stat(*dir ? dir : "/", &st) < 0 || st.st_uid != 0 || (st.st_mode & 022)) return 0;
    return 1;
}

static void start_warm(void) {
#ifdef SANDBOX_WARM_BASH
    struct user u;
    if (g_agent_uid == 0 || passwd_cached(g_agent_uid, &u) < 0) return;
    static struct request rq;
    memset(&rq, 0, sizeof rq);
    for (int i = 0; i < g_nbash_env; i++) rq.env[rq.envc++] = g_bash_env[i];
    rq.argv[0] = "bash";
    rq.argc = 1;
    static struct spawn sp;
    spawn_prepare(&sp, &rq, &u, 0, 1, 2, -1, 0);
    int ne = 0;
    for (; sp.envp[ne]; ne++) g_warm_env[ne] = strdup(sp.envp[ne]);
    g_warm_env[ne] = NULL;
    char bash[PATH_MAX] = "";
    for (const char *p = sp.search; p && *p;) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        if (dl && p[0] == '/' && dl + 6 < sizeof bash) {
            snprintf(bash, sizeof bash, "%.*s/bash", (int)dl, p);
            if (access(bash, X_OK) == 0) break;
        }
        bash[0] = 0;
        if (!colon) break;
        p = colon + 1;
    }
    if (!*bash || (g_privileged && !root_owned(bash))) return;
    int mfd = memfd_create("sbx-warm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    size_t len = (size_t)(g_warm_so_end - g_warm_so);
    if (mfd < 0 || write_all(mfd, g_warm_so, len) < 0 ||
        fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        if (mfd >= 0) close(mfd);
        return;
    }
    int zs[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, zs) < 0) { close(mfd); return; }
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        reset_signals();
        int obs = g_obs_chan[1] >= 0 ? dup(g_obs_chan[1]) : -1;
        int fds[3] = {fcntl(zs[1], F_DUPFD, 10), obs >= 0 ? fcntl(obs, F_DUPFD, 10) : -1,
                      fcntl(mfd, F_DUPFD, 10)};
        int nul = open("/dev/null", O_RDONLY);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(fds[0], 3) < 0 || dup2(fds[2], 5) < 0) _exit(127);
        if (fds[1] >= 0) { if (dup2(fds[1], 4) < 0) _exit(127); } else close(4);
        close_from(6);
        umask(022);
        if (chdir(u.home) < 0 && chdir("/") < 0) _exit(127);
        /* Only what making a command needs: the agent's ids, the bounding set emptied. */
        const int keep[3] = {7, 6, 8};
        if (g_privileged) {
            for (int cap = 0; cap < 64; cap++) {
                if (cap == keep[0] || cap == keep[1] || cap == keep[2]) continue;
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL) break;
            }
            if (geteuid() != 0) {
                struct cap_header h = {CAP_VERSION_3, 0};
                struct cap_data d[2];
                if (syscall(SYS_capget, &h, d) < 0) _exit(127);
                d[0].inheritable = 0;
                d[1].inheritable = 0;
                for (int i = 0; i < 3; i++) d[0].inheritable |= 1U << keep[i];
                if (syscall(SYS_capset, &h, d) < 0) _exit(127);
                for (int i = 0; i < 3; i++)
                    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, keep[i], 0, 0) < 0) _exit(127);
            }
        }
        char *argv[] = {"bash", "-c",
                        "enable -f /proc/self/fd/5 sbx_warm && exec 5<&- && sbx_warm && "
                        "eval \"$BASH_EXECUTION_STRING\"", NULL};
        execve(bash, argv, g_warm_env);
        _exit(127);
    }
    close(zs[1]);
    close(mfd);
    if (pid < 0) { close(zs[0]); return; }
    g_warm_fd = zs[0];
    g_warm_pid = pid;
    logmsg("warm bash: %s (zygote %d)", bash, (int)pid);
#endif
}

/* Whether this EXEC can be a warm bash (envp: what spawn_prepare made of it). */
static int warm_eligible(const struct request *rq, const struct user *u, char *const *envp) {
    if (g_warm_fd < 0 || rq->argc != 3 || strcmp(rq->argv[0], "bash") || strcmp(rq->argv[1], "-c"))
        return 0;
    if (u->uid != g_agent_uid || u->uid == 0) return 0;
    int i = 0;
    for (; envp[i] && g_warm_env[i]; i++) if (strcmp(envp[i], g_warm_env[i])) return 0;
    return !envp[i] && !g_warm_env[i];
}

/* Reads one keeper message (within ms); 1 read, 0 EOF or timeout, -1 error. */
static int warm_read(int fd, struct warm_rep *r, int ms) {
    struct pollfd p = {fd, POLLIN, 0};
    int k;
    while ((k = poll(&p, 1, ms)) < 0 && errno == EINTR) {}
    if (k <= 0) return 0;
    ssize_t n;
    while ((n = recv(fd, r, sizeof *r, MSG_DONTWAIT)) < 0 && errno == EINTR) {}
    return n == (ssize_t)sizeof *r ? 1 : n == 0 ? 0 : -1;
}

/* Hands the command to the zygote; returns the command's pid (and the keeper's), or -1:
 * errno EAGAIN (the pids limit), ENOTCONN (no zygote: spawn cold; nothing ran). */
static pid_t warm_start(const struct request *rq, const struct user *u, int fds[3], int observed,
                        long long serial, long long deadline_ms, int *reply, pid_t *keeper) {
    static unsigned char buf[sizeof(struct warm_req) + WARM_MAX + 8];
    const char *cwd = rq->cwd ? rq->cwd : "", *cmd = rq->argv[2];
    struct warm_req q = {WARM_MAGIC, (observed ? 1U : 0U) | (g_privileged ? 2U : 0U), serial,
                         u->uid, u->gid, (uint32_t)strlen(cwd), (uint32_t)strlen(u->home),
                         (uint32_t)strlen(cmd), observed ? (uint32_t)g_filter_len : 0};
    size_t strings = sizeof q + q.cwd_len + q.home_len + q.cmd_len + 3;
    size_t at = (strings + 7) & ~(size_t)7, total = at + q.filter_len * sizeof(struct sc_filter);
    if (total > sizeof buf - 8) { errno = ENOTCONN; return -1; }
    memset(buf, 0, at);
    memcpy(buf, &q, sizeof q);
    memcpy(buf + sizeof q, cwd, q.cwd_len + 1);
    memcpy(buf + sizeof q + q.cwd_len + 1, u->home, q.home_len + 1);
    memcpy(buf + sizeof q + q.cwd_len + q.home_len + 2, cmd, q.cmd_len + 1);
    if (q.filter_len) memcpy(buf + at, g_filter, q.filter_len * sizeof(struct sc_filter));
    int rs[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, rs) < 0) { errno = ENOTCONN; return -1; }
    int pass[4] = {fds[0], fds[1], fds[2], rs[1]};
    union { char b[CMSG_SPACE(sizeof pass)]; struct cmsghdr align; } c;
    memset(&c, 0, sizeof c);
    struct iovec io = {buf, total};
    struct msghdr m = {0};
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = c.b;
    m.msg_controllen = sizeof c.b;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof pass);
    memcpy(CMSG_DATA(cm), pass, sizeof pass);
    ssize_t r;
    while ((r = sendmsg(g_warm_fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 && errno == EINTR) {}
    close(rs[1]);
    if (r < 0) { close(rs[0]); errno = ENOTCONN; return -1; }
    struct warm_rep rep;
    long long left = deadline_ms - now_ms();
    int got = warm_read(rs[0], &rep, left < 1 ? 1 : left > 5000 ? 5000 : (int)left);
    if (got == 1 && rep.type == 'P') { *reply = rs[0]; *keeper = rep.status; return rep.pid; }
    close(rs[0]);
    errno = got == 1 && rep.type == 'E' && rep.err == EAGAIN ? EAGAIN : ENOTCONN;
    return -1;
}


/* Takes what the keeper said so far: the command's end ('X'), no child left ('Q'; EOF:
 * the keeper is gone, so is its tree). */
static void warm_take(int fd, struct cmd *c, struct warm_rep *x, int *quiet) {
    struct warm_rep r;
    int got;
    while (!*quiet && (got = warm_read(fd, &r, 0)) != 0) {
        if (got < 0) continue;
        if (r.type == 'X' && c->root_alive) {
            c->root_alive = 0;
            c->status = r.status;
            c->end_ns = now_ns();
            *x = r;
        } else if (r.type == 'Q') {
            *quiet = 1;
        }
    }
    if (!*quiet) return;
    if (c->root_alive) { c->root_alive = 0; c->status = SIGKILL; c->end_ns = now_ns(); }
}

static void op_exec(int conn, int sigfd, struct request *rq) {
    struct user u;
    char err[512];
    if (rq->argc == 0) { send_error(conn, EINVAL, "empty argv"); return; }
    int reclaimed = take_reclaimed();
    if (reclaimed) { send_pid_limit(conn, reclaimed); return; }
    if (resolve_user(rq->user, &u, err, sizeof err) < 0) { send_error(conn, EPERM, "%s", err); return; }
    long long cap = rq->cap;
    int pin[2], pout[2], perr[2];
    if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0) {
        send_error(conn, errno, "pipe: %s", strerror(errno));
        return;
    }
    long long serial = __atomic_add_fetch(&g_shared->serial, 1, __ATOMIC_SEQ_CST);
    int observed = rq->observe && g_obs_chan[1] >= 0;
    long long t0 = now_ns();
    struct cmd c = {0, 1, 0, 0, 0};
    static struct spawn sp;
    spawn_prepare(&sp, rq, &u, pin[0], pout[1], perr[1], observed ? g_obs_chan[1] : -1, serial);
    int stalled = 0, warm = -1, warm_quiet = 0;
    struct warm_rep wx = {0};
    c.root = -1;
    errno = ENOTCONN;
    if (warm_eligible(rq, &u, sp.envp)) {
        int three[3] = {pin[0], pout[1], perr[1]};
        c.root = warm_start(rq, &u, three, observed, serial, now_ms() + rq->timeout_ms, &warm, &c.keeper);
    }
    if (c.root < 0 && errno == ENOTCONN)
        c.root = spawn_command(&sp, now_ms() + rq->timeout_ms, perr[1], &stalled);
    if (c.root < 0 && errno == EAGAIN) {
        /* The agent filled the process table: empty it and refuse this command with a
         * notice (the agent learns its processes were killed); the next one runs. */
        reclaim_pids();
        send_pid_limit(conn, take_reclaimed());
        return;
    }
    if (c.root < 0) { send_error(conn, errno, "fork: %s", strerror(errno)); return; }
    if (stalled) kill_tree(&c); /* its listener helper too (same process group) */
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    int fds[2] = {pout[0], perr[0]};
    const char types[2] = {'o', 'e'};
    set_nonblock(fds[0]);
    set_nonblock(fds[1]);
    set_nonblock(pin[1]);
    int in_fd = pin[1];
    size_t in_off = 0;
    if (rq->data_len == 0) { close(in_fd); in_fd = -1; }
    long long deadline = now_ms() + rq->timeout_ms, drain_deadline = 0;
    long long total = 0;
    int timed_out = stalled, truncated = 0, host_gone = 0;
    long long killed_at = stalled ? now_ms() : 0;
    static char buf[CHUNK];

    for (;;) {
        long long now = now_ms();
        if (!c.root_alive) {
            if (!drain_deadline) drain_deadline = now + DRAIN_MS;
            if ((fds[0] < 0 && fds[1] < 0) || now >= drain_deadline) break;
        } else if (killed_at && now - killed_at > 2000) {
            break; /* killed but not reaped (stuck in the kernel): report anyway */
        } else if (now >= deadline && !timed_out) {
            timed_out = 1;
            killed_at = now;
            kill_tree(&c);
            continue;
        }
        struct pollfd p[6];
        int np = 0;
        p[np++] = (struct pollfd){sigfd, POLLIN, 0};
        p[np++] = (struct pollfd){conn, POLLIN, 0};
        int io = np;
        for (int k = 0; k < 2; k++) p[np++] = (struct pollfd){fds[k], POLLIN, 0};
        p[np++] = (struct pollfd){in_fd, POLLOUT, 0};
        p[np++] = (struct pollfd){warm_quiet ? -1 : warm, POLLIN, 0};
        long long wait = c.root_alive ? deadline - now : drain_deadline - now;
        if (killed_at) wait = 10; /* killed: just reap */
        if (wait < 0) wait = 0;
        if (wait > 1000) wait = 1000;
        int r = poll(p, (nfds_t)np, (int)wait);
        if (r < 0 && errno != EINTR) break;
        if (r <= 0) { reap(&c); continue; }
        if (p[0].revents) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof si) > 0) {}
            reap(&c);
        }
        if (p[1].revents) { host_gone = 1; break; } /* host hung up (or broke protocol) */
        if (warm >= 0 && p[io + 3].revents) warm_take(warm, &c, &wx, &warm_quiet);
        for (int k = 0; k < 2; k++) {
            if (fds[k] < 0 || !p[io + k].revents) continue;
            ssize_t n = read(fds[k], buf, sizeof buf);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (n <= 0) { close(fds[k]); fds[k] = -1; continue; }
            if (total + n > cap) {
                n = (ssize_t)(cap - total);
                truncated = 1;
            }
            if (n > 0 && send_frame(conn, types[k], buf, (size_t)n) < 0) { host_gone = 1; break; }
            total += n;
            if (truncated) {
                killed_at = now_ms();
                kill_tree(&c);
                for (int j = 0; j < 2; j++) if (fds[j] >= 0) { close(fds[j]); fds[j] = -1; }
                break;
            }
        }
        if (host_gone) break;
        if (in_fd >= 0 && p[io + 2].revents) {
            ssize_t n = write(in_fd, rq->data + in_off, rq->data_len - in_off > CHUNK ? CHUNK : rq->data_len - in_off);
            if (n > 0) in_off += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || in_off >= rq->data_len) {
                close(in_fd);
                in_fd = -1;
            }
        }
    }
    if (in_fd >= 0) close(in_fd);
    if (host_gone) {
        kill_tree(&c);
        return;
    }
    /* A killed root may take a moment to be reaped; never wait forever. */
    for (int i = 0; i < 2000 && c.root_alive; i++) {
        reap(&c);
        if (warm >= 0) warm_take(warm, &c, &wx, &warm_quiet);
        if (c.root_alive) usleep(1000);
    }
    long long end = c.root_alive ? now_ns() : c.end_ns;

    /* Survivors: live descendants after the command ended. Every descendant is
     * either below one of our children or was reparented to us (we are a
     * subreaper), so "no child at all" means no survivor: skip the /proc walk. */
    int nsurv = 0;
    struct pinfo *v;
    reap(&c);
    if (warm >= 0) warm_take(warm, &c, &wx, &warm_quiet);
    int n = (warm >= 0 ? !warm_quiet : have_children()) ? list_procs(&v) : 0;
    if (n > 0) {
        char *mark = malloc((size_t)n);
        if (mark) {
            mark_descendants(v, n, c.keeper ? c.keeper : getpid(), mark);
            for (int i = 0; i < n && nsurv < MAX_SURVIVORS; i++) {
                if (!mark[i] || v[i].state == 'Z' || v[i].state == 'X') continue;
                int sent = send_process(conn, &v[i]);
                if (sent < 0) break;
                nsurv += sent;
            }
            free(mark);
        }
        free(v);
    }
    if (g_strict && nsurv) kill_tree(&c);
    reap(&c);
    int nsys = send_syscalls(conn);
    if (nsys < 0) nsys = 0;
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    if (warm >= 0) {
        ru.ru_utime = (struct timeval){(time_t)(wx.utime_us / 1000000), (suseconds_t)(wx.utime_us % 1000000)};
        ru.ru_stime = (struct timeval){(time_t)(wx.stime_us / 1000000), (suseconds_t)(wx.stime_us % 1000000)};
        ru.ru_maxrss = (long)wx.maxrss_kb;
    }
    static struct rec res;
    res.len = 0;
    if (c.root_alive) rec_int(&res, 's', SIGKILL);
    else if (WIFEXITED(c.status)) rec_int(&res, 'x', WEXITSTATUS(c.status));
    else if (WIFSIGNALED(c.status)) rec_int(&res, 's', WTERMSIG(c.status));
    rec_int(&res, 't', timed_out);
    rec_int(&res, 'k', truncated);
    rec_int(&res, 'c', cap);
    rec_int(&res, 'd', end - t0);
    rec_int(&res, 'U', (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec);
    rec_int(&res, 'Y', (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec);
    rec_int(&res, 'M', ru.ru_maxrss);
    rec_int(&res, 'n', nsurv);
    rec_int(&res, 'R', c.root); /* the command's session: the root called setsid */
    rec_int(&res, 'q', serial);
    rec_int(&res, 'o', observed);
    rec_int(&res, 'y', nsys);
    rec_int(&res, 'D', __atomic_exchange_n(&g_shared->dropped, 0, __ATOMIC_SEQ_CST));
    rec_int(&res, 'w', warm >= 0);
    send_frame(conn, 'Z', res.buf, res.len);
    close(conn);

    /* Linger while survivors hold the command's pipes: keep draining them (so a
     * server that logs to stdout does not die of SIGPIPE) and reap. Once the pipes
     * are closed (or no descendant is left) we exit; remaining survivors are then
     * reparented to the main server (a subreaper), so a lingering handler only
     * costs a process while it is actually needed. */
    for (;;) {
        int st;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0) {}
        if (warm >= 0) {
            warm_take(warm, &c, &wx, &warm_quiet);
            if (warm_quiet) break;
        } else if (w < 0 && errno == ECHILD) {
            break;
        }
        if (fds[0] < 0 && fds[1] < 0) break;
        struct pollfd p[4];
        int np = 0;
        p[np++] = (struct pollfd){sigfd, POLLIN, 0};
        for (int k = 0; k < 2; k++) p[np++] = (struct pollfd){fds[k], POLLIN, 0};
        p[np++] = (struct pollfd){warm, POLLIN, 0};
        poll(p, (nfds_t)np, 1000);
        if (p[0].revents) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof si) > 0) {}
        }
        for (int k = 0; k < 2; k++) {
            if (fds[k] >= 0 && p[1 + k].revents) {
                ssize_t r = read(fds[k], buf, sizeof buf);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { close(fds[k]); fds[k] = -1; }
            }
        }
    }
}

/* ------------------------------------------------------------------ files */

/* In a file helper: access files exactly as the agent would, while staying out of its
 * reach. Only the file-system ids become the agent's (the kernel then drops the file
 * capabilities) and every capability is emptied, so opening, creating and reading are
 * checked against the agent's uid/gid; the real and effective uids stay root, so the
 * agent cannot signal the helper (a `pkill -9 sbx-file-io` loop would otherwise make
 * the host's reads fail) and, with the helper not dumpable, cannot read its memory. */
static int become_file_user(const struct user *u) {
    if (!g_privileged) return 0;
    if (setgroups(0, NULL) < 0) return -1;
    setfsgid(u->gid);
    setfsuid(u->uid);
    if ((uid_t)setfsuid((uid_t)-1) != u->uid || (gid_t)setfsgid((gid_t)-1) != u->gid) {
        errno = EPERM;
        return -1;
    }
    struct cap_header h = {CAP_VERSION_3, 0};
    struct cap_data d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) < 0) return -1;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return -1;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* Forks a file helper acting as the agent user (see become_file_user); returns its pid. */
static pid_t fork_as_agent(int keep_fd, const struct user *u) {
    pid_t pid = fork_reclaiming();
    if (pid != 0) return pid;
    reset_signals();
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_NAME, "sbx-file-io", 0, 0, 0);
    if (keep_fd >= 0) {
        if (dup2(keep_fd, 3) < 0) _exit(EIO);
        close_from(4);
    } else {
        close_from(3);
    }
    if (become_file_user(u) < 0) _exit(errno ? errno : EPERM);
    if (chdir(u->home) < 0 && chdir("/") < 0) _exit(EACCES);
    return 0;
}

static int wait_helper(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) return EIO;
    }
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return EIO;
}

static void op_read(int conn, struct request *rq) {
    struct user u;
    char err[512];
    if (!rq->path || !*rq->path) { send_error(conn, EINVAL, "no path"); return; }
    if (resolve_user(NULL, &u, err, sizeof err) < 0) { send_error(conn, EPERM, "%s", err); return; }
    long long maxn = rq->maxn < 0 ? 64LL * 1024 * 1024 : rq->maxn;
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) < 0) { send_error(conn, errno, "pipe"); return; }
    pid_t pid = fork_as_agent(pp[1], &u);
    if (pid < 0) { send_error(conn, errno, "fork"); return; }
    if (pid == 0) {
        /* O_NONBLOCK: a FIFO planted at the path must not hang us. */
        int fd = open(rq->path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) _exit(errno);
        struct stat st;
        if (fstat(fd, &st) < 0) _exit(errno);
        if (S_ISDIR(st.st_mode)) _exit(EISDIR);
        if (!S_ISREG(st.st_mode)) _exit(EINVAL);
        if (st.st_size > maxn) _exit(EFBIG);
        fcntl(fd, F_SETFL, 0);
        static char b[CHUNK];
        for (;;) {
            ssize_t n = read(fd, b, sizeof b);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) _exit(errno);
            if (n == 0) _exit(0);
            if (write_all(3, b, (size_t)n) < 0) _exit(EPIPE);
        }
    }
    close(pp[1]);
    static char b[CHUNK];
    long long total = 0;
    int too_big = 0, broken = 0;
    for (;;) {
        ssize_t n = read(pp[0], b, sizeof b);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (total + n > maxn) { too_big = 1; kill(pid, SIGKILL); break; }
        if (send_frame(conn, 'b', b, (size_t)n) < 0) { broken = 1; kill(pid, SIGKILL); break; }
        total += n;
    }
    close(pp[0]);
    int e = wait_helper(pid);
    if (broken) return;
    if (too_big || e == EFBIG) { send_error(conn, EFBIG, "%s is larger than %lld bytes", rq->path, maxn); return; }
    if (e == EINVAL) { send_error(conn, EINVAL, "%s is not a regular file", rq->path); return; }
    if (e) { send_error(conn, e, "%s: %s", rq->path, strerror(e)); return; }
    static struct rec r;
    r.len = 0;
    rec_int(&r, 'z', total);
    send_frame(conn, 'Z', r.buf, r.len);
}

/* mkdir -p of the parent directories of path (as the agent). */
static int make_parents(const char *path) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return ENAMETOOLONG;
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return errno;
        *s = '/';
    }
    return 0;
}

static void op_write(int conn, struct request *rq) {
    struct user u;
    char err[512];
    if (!rq->path || !*rq->path) { send_error(conn, EINVAL, "no path"); return; }
    if (resolve_user(NULL, &u, err, sizeof err) < 0) { send_error(conn, EPERM, "%s", err); return; }
    pid_t pid = fork_as_agent(-1, &u);
    if (pid < 0) { send_error(conn, errno, "fork"); return; }
    if (pid == 0) {
        /* The helper has its own copy of the data (fork), no pipe needed. */
        umask(022);
        int e = make_parents(rq->path);
        if (e) _exit(e);
        int fd = open(rq->path, O_WRONLY | O_CREAT | O_TRUNC | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
                      (mode_t)rq->mode);
        if (fd < 0) _exit(errno);
        struct stat st;
        if (fstat(fd, &st) < 0) _exit(errno);
        if (!S_ISREG(st.st_mode)) _exit(EINVAL);
        if (fchmod(fd, (mode_t)rq->mode) < 0) _exit(errno);
        fcntl(fd, F_SETFL, 0);
        if (rq->data_len && write_all(fd, rq->data, rq->data_len) < 0) _exit(errno);
        if (close(fd) < 0) _exit(errno);
        _exit(0);
    }
    int e = wait_helper(pid);
    if (e == EINVAL) { send_error(conn, EINVAL, "%s is not a regular file", rq->path); return; }
    if (e) { send_error(conn, e, "%s: %s", rq->path, strerror(e)); return; }
    static struct rec r;
    r.len = 0;
    rec_int(&r, 'z', (long long)rq->data_len);
    send_frame(conn, 'Z', r.buf, r.len);
}

/* ------------------------------------------------------------------ PS */
/* Sends a record for every process but init, the executor and its handlers; returns how
 * many, or -1 (an error was sent, or the host is gone). */
static int ps_records(int conn) {
    struct pinfo *v;
    int n = list_procs(&v), sent = 0;
    if (n < 0) { send_error(conn, errno, "cannot list /proc"); return -1; }
    for (int i = 0; i < n; i++) {
        if (v[i].pid == 1 || v[i].pid == g_main_pid || v[i].pid == getpid()) continue;
        if (v[i].ppid == g_main_pid && is_handler(v[i].pid)) continue; /* by pid, not name */
        /* the zygote and its keepers (it forks nothing else; orphans never go to it) */
        if ((v[i].ppid == g_main_pid && v[i].pid == g_warm_pid) || v[i].ppid == g_warm_pid) continue;
        if (v[i].state == 'X') continue;
        int one = send_process(conn, &v[i]);
        if (one < 0) { free(v); return -1; }
        sent += one;
    }
    free(v);
    return sent;
}

static void op_ps(int conn) {
    int sent = ps_records(conn);
    if (sent < 0) return;
    static struct rec r;
    r.len = 0;
    rec_int(&r, 'n', sent);
    send_frame(conn, 'Z', r.buf, r.len);
}

/* ------------------------------------------------------------------ FS_SNAPSHOT */
/* File entries travel in batches: one 'g' frame holds up to FS_BATCH bytes of entries
 * in a fixed binary layout (cheap to write here and to parse on the host), instead of one
 * record frame per entry:  type (1 byte: f/d/l/o) | size (int64 BE) | mode (uint32 BE)
 * | mtime_ns (int64 BE) | uid (uint32 BE) | path length (uint32 BE) | path bytes. */
#define FS_BATCH CHUNK
#define FS_HEAD 29
static struct { size_t len; unsigned char buf[FS_BATCH]; } g_batch;

static int flush_entries(int conn) {
    if (g_batch.len == 0) return 0;
    int rc = send_frame(conn, 'g', g_batch.buf, g_batch.len);
    g_batch.len = 0;
    return rc;
}

static unsigned char *put_be(unsigned char *b, unsigned long long v, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) { b[i] = (unsigned char)v; v >>= 8; }
    return b + bytes;
}

static int send_entry(int conn, const char *path, const struct stat *st) {
    char t = S_ISREG(st->st_mode) ? 'f' : S_ISDIR(st->st_mode) ? 'd' : S_ISLNK(st->st_mode) ? 'l' : 'o';
    size_t plen = strlen(path);
    if (plen > PATH_MAX) return 1; /* only a host-given root can be that long: not listed */
    if (g_batch.len + FS_HEAD + plen > FS_BATCH && flush_entries(conn) < 0) return -1;
    unsigned char *b = g_batch.buf + g_batch.len;
    *b++ = (unsigned char)t;
    b = put_be(b, (unsigned long long)(long long)st->st_size, 8);
    b = put_be(b, (unsigned long long)(st->st_mode & 07777), 4);
    b = put_be(b, (unsigned long long)((long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec), 8);
    b = put_be(b, (unsigned long long)st->st_uid, 4);
    b = put_be(b, (unsigned long long)plen, 4);
    memcpy(b, path, plen);
    g_batch.len += FS_HEAD + plen;
    return 0;
}

/* One pending path of the walk, with the identity of the directory it was listed in. */
struct pending { char *path; dev_t pdev; ino_t pino; int root; };

/* Opens the directory part of path (O_PATH) and checks it is still the directory the
 * entry was listed in: the walk runs as root (DAC_READ_SEARCH), so a directory the agent
 * swaps for a symlink (to /root, /proc, the socket directory) after it was listed must
 * not lead us there. Returns the fd and stores the name's offset, or -1. */
static int open_parent(const struct pending *e, size_t *name_at) {
    char *slash = strrchr(e->path, '/');
    if (!slash) return -1;
    *name_at = (size_t)(slash - e->path) + 1;
    char saved = slash[slash == e->path ? 1 : 0];
    slash[slash == e->path ? 1 : 0] = 0; /* "/x" -> "/", "/a/b" -> "/a" */
    int fd = open(e->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    slash[slash == e->path ? 1 : 0] = saved;
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_dev != e->pdev || st.st_ino != e->pino)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* The incremental observer (WATCH, below) hooks into the walk: every directory entered is
 * watched before it is listed, every file with more than one link is remembered. */
static int watch_dir(int dfd, const char *path, const struct stat *st);
static void watch_link(const char *path, int parent_wd, const struct stat *st);

/* Depth-first lstat walk with an explicit stack; never follows a symlink, neither as the
 * entry itself nor as a directory on the way to it. */
/* The walk of FS_SNAPSHOT (and OBSERVE): sends the entries, stores how many and whether
 * the walk was cut at max entries; -1 when an error was sent or the host is gone. */
static int fs_walk_from(int conn, struct pending *start, int nstart, long long maxn, int watch,
                        long long *sent_out, int *truncated_out);

static int fs_walk(int conn, struct request *rq, long long *sent_out, int *truncated_out) {
    struct pending start[MAX_ROOTS];
    int n = 0;
    for (int i = rq->nroots - 1; i >= 0; i--) {
        char *s = strdup(rq->roots[i]);
        if (s) start[n++] = (struct pending){s, 0, 0, 1};
    }
    return fs_walk_from(conn, start, n, rq->maxn < 0 ? 20000 : rq->maxn, 0, sent_out, truncated_out);
}

/* `start` is pushed as given (last popped first); with `watch`, directories are watched. */
static int fs_walk_from(int conn, struct pending *start, int nstart, long long maxn, int watch,
                        long long *sent_out, int *truncated_out) {
    long long sent = 0;
    int truncated = 0;
    size_t cap = 64 + (size_t)nstart, top = 0;
    struct pending *stack = malloc(cap * sizeof *stack);
    if (!stack) {
        for (int i = 0; i < nstart; i++) free(start[i].path);
        send_error(conn, ENOMEM, "out of memory");
        return -1;
    }
    for (int i = 0; i < nstart; i++) stack[top++] = start[i];
    while (top > 0) {
        struct pending e = stack[--top];
        char *path = e.path;
        struct stat st;
        int ok;
        if (e.root) {
            ok = lstat(path, &st) == 0; /* the host's own choice of root */
        } else {
            size_t name_at;
            int pfd = open_parent(&e, &name_at);
            ok = pfd >= 0 && fstatat(pfd, path + name_at, &st, AT_SYMLINK_NOFOLLOW) == 0;
            if (pfd >= 0) close(pfd);
        }
        if (!ok) { free(path); continue; }
        /* Past max entries a watching walk goes on, sending nothing: every directory is
         * watched, so what lies past the cap is followed too (and hard links made there). */
        if (sent >= maxn) { truncated = 1; if (!watch) { free(path); break; } }
        int quiet = conn < 0 || sent >= maxn;
        int rc = quiet ? 0 : send_entry(conn, path, &st);
        if (rc < 0) { free(path); break; }
        if (rc > 0) { free(path); continue; }
        if (!quiet) sent++;
        if (!S_ISDIR(st.st_mode)) { free(path); continue; }
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat dst;
        if (dfd < 0 || fstat(dfd, &dst) < 0 || dst.st_ino != st.st_ino || dst.st_dev != st.st_dev) {
            if (dfd >= 0) close(dfd);
            free(path);
            continue; /* unreadable or swapped for something else: not entered */
        }
        int wd = watch ? watch_dir(dfd, path, &dst) : -1; /* before listing: nothing slips by */
        DIR *d = fdopendir(dfd);
        if (!d) { close(dfd); free(path); continue; }
        struct dirent *de;
        size_t plen = strlen(path);
        int slash = plen > 0 && path[plen - 1] == '/', broken = 0;
        static char cpath[PATH_MAX + 1];
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            size_t nl = strlen(de->d_name);
            if (plen + nl + 2 > PATH_MAX) continue;
            snprintf(cpath, sizeof cpath, slash ? "%s%s" : "%s/%s", path, de->d_name);
            /* Anything but a directory is reported right here, its lstat taken relative
             * to the open directory (it cannot be swapped for a symlink under us): one
             * syscall per file instead of re-opening its parent later. */
            struct stat cst;
            if (fstatat(dfd, de->d_name, &cst, AT_SYMLINK_NOFOLLOW) < 0) continue;
            if (!S_ISDIR(cst.st_mode)) {
                if (sent >= maxn) { truncated = 1; if (!watch) break; }
                if (watch && cst.st_nlink > 1) watch_link(cpath, wd, &cst);
                if (conn < 0 || sent >= maxn) continue; /* watched, not sent */
                int crc = send_entry(conn, cpath, &cst);
                if (crc < 0) { broken = 1; break; }
                if (crc == 0) sent++;
                continue;
            }
            /* Every pending directory yields at least one entry: never hold more than
             * we may still report (bounds memory for huge directories). */
            if (!watch && sent + (long long)top >= maxn) { truncated = 1; break; }
            if (top == cap) {
                struct pending *ns = realloc(stack, 2 * cap * sizeof *stack);
                if (!ns) break;
                stack = ns;
                cap *= 2;
            }
            char *child = strdup(cpath);
            if (!child) break;
            stack[top++] = (struct pending){child, st.st_dev, st.st_ino, 0};
        }
        closedir(d);
        free(path);
        if (broken) break;
    }
    while (top > 0) free(stack[--top].path);
    free(stack);
    if (conn >= 0 && flush_entries(conn) < 0) return -1;
    *sent_out = sent;
    *truncated_out = truncated;
    return 0;
}

static void op_fs(int conn, struct request *rq) {
    long long sent;
    int truncated;
    if (fs_walk(conn, rq, &sent, &truncated) < 0) return;
    static struct rec r;
    r.len = 0;
    rec_int(&r, 'n', sent);
    rec_int(&r, 'k', truncated);
    send_frame(conn, 'Z', r.buf, r.len);
}

/* OBSERVE: PS and FS_SNAPSHOT in one reply (one connection and handler instead of two;
 * the observer asks for both after every command). */
static void op_observe(int conn, struct request *rq) {
    long long files;
    int truncated;
    int procs = ps_records(conn);
    if (procs < 0 || fs_walk(conn, rq, &files, &truncated) < 0) return;
    static struct rec r;
    r.len = 0;
    rec_int(&r, 'n', procs);
    rec_int(&r, 'f', files);
    rec_int(&r, 'k', truncated);
    send_frame(conn, 'Z', r.buf, r.len);
}

/* ------------------------------------------------------------------ WATCH */
/* WATCH ('V'): OBSERVE at the cost of what changed, not of what is there. It is served on
 * its own socket (the main socket's path + ".w") by the watcher, one long-lived process
 * forked at start (hidden from PS like a handler), which keeps an inotify watch on every
 * directory under the roots and, between requests, drains the kernel's queue into a set
 * of dirty names. A look re-stats only those names and the files that have more than one
 * link, and sends what it found; the host keeps the snapshot and applies it.
 *
 *   request:  'V' | 'p' root (repeated) | 'n' max entries | 'w' the generation the host's
 *             snapshot is at (0: none) | 'r' 1 to walk everything (the end-of-trial
 *             backstop) | '.'
 *   reply:    'r' process records; then, as in OBSERVE, 'g' entry batches; in a delta
 *             also 'L' (directories listed in full: their whole subtree is in this reply),
 *             'D' (names that are gone) and 'M' (names written to: reported modified even
 *             when size, mode and mtime say otherwise -- `touch -d` cannot hide a write);
 *             each a list of NUL-separated paths. Final 'Z': n process records, f entries,
 *             k truncated, w generation of this reply, m 1 delta / 0 full walk, r why a
 *             full walk (see the W_ codes).
 * A full walk (the host then diffs) whenever a delta could be wrong: a first look or other
 * roots, a host at another generation (a lost reply, another observer), the queue
 * overflowed, a root was replaced, the walk was cut at max entries, a directory could not
 * be watched (the watch limit; no DAC_READ_SEARCH), or the host asked.
 * Hard links: a write through another name only notifies that name's directory, so every
 * file with nlink > 1 is re-stat'ed on every look; a name with nlink > 1 whose inode we did
 * not know makes one walk (nothing sent) that finds its other names. A link made from a
 * directory we do not watch cannot be seen (the kernel tells only the inode): every
 * directory under the roots is watched, or else every look is a full walk (blind). */
#include <sys/inotify.h>

#define W_MASK (IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | \
                IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
#define W_MAX_DIRTY (1 << 18)
#define W_MAX_LINKS 4096
#define W_MAX_WD (1 << 20) /* descriptors only grow: past this, a new instance starts over */
enum { W_DELTA, W_NEW, W_STALE, W_OVERFLOW, W_BLIND, W_CUT, W_ASKED, W_ROOT };

struct wdir { char *path; dev_t dev; ino_t ino; };
struct wname { char *path; int wd; int written; };

static struct {
    int ifd;
    char *roots[MAX_ROOTS];
    int nroots;
    long long maxn, gen;          /* gen 0: no state yet */
    int reason;                   /* why the next look must walk everything (W_DELTA: no need) */
    int blind;                    /* a directory could not be watched: always walk */
    struct wdir *dirs;            /* indexed by watch descriptor */
    size_t ndirs;
    struct wname *dirty;          /* open addressing by path, cleared after each look */
    size_t dirty_cap, ndirty;
    struct wname links[W_MAX_LINKS];
    size_t nlinks;
    struct { dev_t dev; ino_t ino; } inodes[W_MAX_LINKS], known[W_MAX_LINKS];
    size_t ninodes, nknown;
    int relink;                   /* a new linked inode: find its other names */
} g_w = {.ifd = -1};

static int watch_is_root(const char *path) {
    for (int i = 0; i < g_w.nroots; i++)
        if (!strcmp(g_w.roots[i], path)) return 1;
    return 0;
}

static int wdir_set(int wd, const char *path, const struct stat *st) {
    if (wd < 0 || wd >= W_MAX_WD) return -1;
    if ((size_t)wd >= g_w.ndirs) {
        size_t n = g_w.ndirs ? g_w.ndirs : 256;
        while (n <= (size_t)wd) n *= 2;
        struct wdir *nd = realloc(g_w.dirs, n * sizeof *nd);
        if (!nd) return -1;
        memset(nd + g_w.ndirs, 0, (n - g_w.ndirs) * sizeof *nd);
        g_w.dirs = nd;
        g_w.ndirs = n;
    }
    struct wdir *d = &g_w.dirs[wd];
    if (!d->path || strcmp(d->path, path)) {
        char *p = strdup(path);
        if (!p) return -1;
        free(d->path);
        d->path = p;
    }
    d->dev = st->st_dev;
    d->ino = st->st_ino;
    return 0;
}

static struct wdir *wdir_get(int wd) {
    return wd >= 0 && (size_t)wd < g_w.ndirs && g_w.dirs[wd].path ? &g_w.dirs[wd] : NULL;
}

/* Watches the open directory dfd (through /proc/self/fd: exactly the inode we opened,
 * whatever its path has become); its watch descriptor, or -1 (then we are blind). */
static int watch_dir(int dfd, const char *path, const struct stat *st) {
    if (g_w.ifd < 0 || g_w.blind) return -1;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", dfd);
    int wd = inotify_add_watch(g_w.ifd, proc, W_MASK);
    if (wd >= W_MAX_WD) { /* directories made and removed by the million: start over */
        inotify_rm_watch(g_w.ifd, wd);
        if (!g_w.reason) g_w.reason = W_OVERFLOW;
        return -1;
    }
    if (wd < 0 || wdir_set(wd, path, st) < 0) {
        logmsg("watch %s: %s; every look walks everything from now on", path, strerror(errno));
        g_w.blind = 1;
        return -1;
    }
    return wd;
}

static int inode_in(const void *set, size_t n, const struct stat *st) {
    const struct { dev_t dev; ino_t ino; } *v = set;
    for (size_t i = 0; i < n; i++)
        if (v[i].dev == st->st_dev && v[i].ino == st->st_ino) return 1;
    return 0;
}

/* Remembers a file with several names (re-stat'ed on every look). */
static void watch_link(const char *path, int parent_wd, const struct stat *st) {
    for (size_t i = 0; i < g_w.nlinks; i++)
        if (!strcmp(g_w.links[i].path, path)) return;
    char *p = g_w.nlinks < W_MAX_LINKS ? strdup(path) : NULL;
    if (!p || parent_wd < 0) { free(p); g_w.blind = 1; return; }
    g_w.links[g_w.nlinks++] = (struct wname){p, parent_wd, 0};
    if (!inode_in(g_w.inodes, g_w.ninodes, st)) {
        g_w.inodes[g_w.ninodes].dev = st->st_dev;
        g_w.inodes[g_w.ninodes++].ino = st->st_ino;
    }
}

static unsigned long long hash_path(const char *s) {
    unsigned long long h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void dirty_add(const char *path, int wd, int written) {
    if (g_w.ndirty >= W_MAX_DIRTY) { if (!g_w.reason) g_w.reason = W_OVERFLOW; return; }
    if (2 * (g_w.ndirty + 1) > g_w.dirty_cap) {
        size_t n = g_w.dirty_cap ? 2 * g_w.dirty_cap : 1024;
        struct wname *nt = calloc(n, sizeof *nt);
        if (!nt) { if (!g_w.reason) g_w.reason = W_OVERFLOW; return; }
        for (size_t i = 0; i < g_w.dirty_cap; i++) {
            if (!g_w.dirty[i].path) continue;
            size_t j = hash_path(g_w.dirty[i].path) & (n - 1);
            while (nt[j].path) j = (j + 1) & (n - 1);
            nt[j] = g_w.dirty[i];
        }
        free(g_w.dirty);
        g_w.dirty = nt;
        g_w.dirty_cap = n;
    }
    size_t j = hash_path(path) & (g_w.dirty_cap - 1);
    while (g_w.dirty[j].path) {
        if (!strcmp(g_w.dirty[j].path, path)) {
            g_w.dirty[j].written |= written;
            g_w.dirty[j].wd = wd;
            return;
        }
        j = (j + 1) & (g_w.dirty_cap - 1);
    }
    char *p = strdup(path);
    if (!p) { if (!g_w.reason) g_w.reason = W_OVERFLOW; return; }
    g_w.dirty[j] = (struct wname){p, wd, written};
    g_w.ndirty++;
}

static void dirty_clear(void) {
    for (size_t i = 0; i < g_w.dirty_cap; i++) free(g_w.dirty[i].path);
    if (g_w.dirty) memset(g_w.dirty, 0, g_w.dirty_cap * sizeof *g_w.dirty);
    g_w.ndirty = 0;
}

static void watch_event(const struct inotify_event *ev) {
    if (ev->mask & IN_Q_OVERFLOW) { if (!g_w.reason) g_w.reason = W_OVERFLOW; return; }
    struct wdir *d = wdir_get(ev->wd);
    if (!d) return;
    if (ev->mask & (IN_IGNORED | IN_UNMOUNT | IN_DELETE_SELF | IN_MOVE_SELF)) {
        /* the directory's own name is its parent's event; a root has none */
        if (watch_is_root(d->path) && !g_w.reason) g_w.reason = W_ROOT;
        if (ev->mask & IN_IGNORED) { free(d->path); d->path = NULL; }
        return;
    }
    if (ev->len == 0 || !ev->name[0]) return;
    char path[PATH_MAX + 1];
    size_t plen = strlen(d->path), nl = strlen(ev->name);
    if (plen + nl + 2 > PATH_MAX) return; /* the walk does not list such names either */
    snprintf(path, sizeof path, plen && d->path[plen - 1] == '/' ? "%s%s" : "%s/%s", d->path, ev->name);
    dirty_add(path, ev->wd, (ev->mask & IN_MODIFY) != 0);
}

static void watch_drain(void) {
    static char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (g_w.ifd >= 0) {
        ssize_t n = read(g_w.ifd, buf, sizeof buf);
        if (n <= 0) break;
        for (char *p = buf; p + sizeof(struct inotify_event) <= buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            watch_event(ev);
            p += sizeof *ev + ev->len;
        }
    }
}

/* Paths of one kind ('L', 'D', 'M') in frames of NUL-separated names. */
static struct plist { char type; size_t len; unsigned char buf[FS_BATCH]; } g_pl[3] = {{.type = 'L'}, {.type = 'D'}, {.type = 'M'}};

static int plist_flush(int conn, struct plist *l) {
    if (l->len == 0) return 0;
    int rc = send_frame(conn, l->type, l->buf, l->len - 1); /* without the last separator */
    l->len = 0;
    return rc;
}

static int plist_add(int conn, struct plist *l, const char *path) {
    size_t n = strlen(path) + 1;
    if (n > FS_BATCH) return 0;
    if (l->len + n > FS_BATCH && plist_flush(conn, l) < 0) return -1;
    memcpy(l->buf + l->len, path, n);
    l->len += n;
    return 0;
}

/* One dirty name: its entry (a new or moved directory with its whole subtree, watched), or
 * that it is gone. 0, or -1 when the host is gone. */
static int watch_visit(int conn, const struct wname *n, long long maxn, long long *sent, int *cut) {
    struct wdir *d = wdir_get(n->wd);
    if (!d) return 0; /* its directory is gone: the directory's own name says so */
    size_t dl = strlen(d->path), off = dl && d->path[dl - 1] == '/' ? dl : dl + 1;
    if (strncmp(n->path, d->path, dl) || (off > dl && n->path[dl] != '/') || !n->path[off])
        return 0; /* its directory moved since: listed whole at its new name */
    const char *name = n->path + off;
    int pfd = open(d->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat pst, st;
    if (pfd < 0 || fstat(pfd, &pst) < 0 || pst.st_dev != d->dev || pst.st_ino != d->ino) {
        if (pfd >= 0) close(pfd);
        return 0; /* not the directory we watch: its own name (its parent's event) says so */
    }
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        close(pfd);
        return plist_add(conn, &g_pl[1], n->path);
    }
    if (*sent >= maxn) { close(pfd); *cut = 1; return 0; }
    if (S_ISDIR(st.st_mode)) {
        int dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), known = 0;
        struct stat dst;
        if (dfd >= 0 && fstat(dfd, &dst) == 0 && dst.st_ino == st.st_ino && dst.st_dev == st.st_dev) {
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", dfd);
            int wd = inotify_add_watch(g_w.ifd, proc, W_MASK); /* the same wd if watched */
            struct wdir *w = wdir_get(wd);
            known = w && !strcmp(w->path, n->path) && w->ino == st.st_ino && w->dev == st.st_dev;
        }
        if (dfd >= 0) close(dfd);
        close(pfd);
        if (known) {
            if (send_entry(conn, n->path, &st) < 0) return -1;
            (*sent)++;
            return 0;
        }
        /* new here (created, moved in, replaced): watched, then listed whole */
        struct pending start = {strdup(n->path), d->dev, d->ino, 0};
        if (!start.path) { g_w.blind = 1; return 0; }
        long long k = 0;
        int kcut = 0;
        if (fs_walk_from(conn, &start, 1, maxn - *sent, 1, &k, &kcut) < 0) return -1;
        *sent += k;
        if (kcut) *cut = 1;
        return plist_add(conn, &g_pl[0], n->path);
    }
    close(pfd);
    if (send_entry(conn, n->path, &st) < 0) return -1;
    (*sent)++;
    if (n->written && plist_add(conn, &g_pl[2], n->path) < 0) return -1;
    if (st.st_nlink > 1) {
        if (!inode_in(g_w.known, g_w.nknown, &st)) g_w.relink = 1;
        watch_link(n->path, n->wd, &st);
    }
    return 0;
}

static void watch_reset(void) {
    if (g_w.ifd >= 0) close(g_w.ifd);
    g_w.ifd = -1;
    for (size_t i = 0; i < g_w.ndirs; i++) free(g_w.dirs[i].path);
    free(g_w.dirs);
    g_w.dirs = NULL;
    g_w.ndirs = 0;
    dirty_clear();
    for (size_t i = 0; i < g_w.nlinks; i++) free(g_w.links[i].path);
    g_w.nlinks = g_w.ninodes = 0;
    g_w.relink = 0;
}

static int watch_roots(struct pending *start) {
    int n = 0;
    for (int i = g_w.nroots - 1; i >= 0; i--) {
        char *s = strdup(g_w.roots[i]);
        if (s) start[n++] = (struct pending){s, 0, 0, 1};
    }
    return n;
}

/* The full walk of a look: every entry sent, every directory watched anew. */
static int watch_full(int conn, long long *sent, int *cut) {
    watch_reset();
    if (!g_w.blind) {
        g_w.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (g_w.ifd < 0) {
            logmsg("inotify: %s; every look walks everything", strerror(errno));
            g_w.blind = 1;
        }
    }
    struct pending start[MAX_ROOTS];
    int n = watch_roots(start);
    if (fs_walk_from(conn, start, n, g_w.maxn, !g_w.blind, sent, cut) < 0) return -1;
    g_w.reason = g_w.blind ? W_BLIND : W_DELTA; /* cut or not: what is past the cap is watched */
    if (g_w.blind) watch_reset();
    memcpy(g_w.known, g_w.inodes, g_w.ninodes * sizeof g_w.inodes[0]);
    g_w.nknown = g_w.ninodes;
    return 0;
}

/* The delta of a look: the dirty names and every file with several names. */
static int watch_delta(int conn, long long *sent, int *cut) {
    watch_drain();
    for (size_t i = 0; i < g_w.nlinks; i++) {
        dirty_add(g_w.links[i].path, g_w.links[i].wd, 0);
        free(g_w.links[i].path);
    }
    g_w.nlinks = g_w.ninodes = 0;
    g_w.relink = 0;
    for (size_t i = 0; i < g_w.dirty_cap; i++) {
        if (g_w.dirty[i].path && watch_visit(conn, &g_w.dirty[i], g_w.maxn, sent, cut) < 0) return -1;
    }
    dirty_clear();
    if (g_w.relink) {
        /* a name with a new linked inode: find every name of every linked inode */
        struct pending start[MAX_ROOTS];
        int n = watch_roots(start);
        long long k = 0;
        int kcut = 0;
        for (size_t i = 0; i < g_w.nlinks; i++) free(g_w.links[i].path);
        g_w.nlinks = g_w.ninodes = 0;
        fs_walk_from(-1, start, n, g_w.maxn, 1, &k, &kcut);
        memcpy(g_w.known, g_w.inodes, g_w.ninodes * sizeof g_w.inodes[0]);
        g_w.nknown = g_w.ninodes;
        for (size_t i = 0; i < g_w.nlinks; i++) dirty_add(g_w.links[i].path, g_w.links[i].wd, 0);
        for (size_t i = 0; i < g_w.dirty_cap; i++) {
            if (g_w.dirty[i].path && watch_visit(conn, &g_w.dirty[i], g_w.maxn, sent, cut) < 0) return -1;
        }
        dirty_clear();
    }
    memcpy(g_w.known, g_w.inodes, g_w.ninodes * sizeof g_w.inodes[0]);
    g_w.nknown = g_w.ninodes;
    if (*cut && !g_w.reason) g_w.reason = W_CUT;
    if (g_w.blind && !g_w.reason) g_w.reason = W_BLIND;
    for (int i = 0; i < 3; i++)
        if (plist_flush(conn, &g_pl[i]) < 0) return -1;
    return flush_entries(conn);
}

/* Reads a WATCH request: roots, max entries, the host's generation, a forced walk. */
static int watch_read(int conn, long long *maxn, long long *since, long long *force) {
    static char *roots[MAX_ROOTS];
    int nroots = 0, first = 1, bad = 0;
    *maxn = 20000;
    *since = 0;
    *force = 0;
    g_in.pos = g_in.len = 0;
    for (;;) {
        unsigned char hdr[5];
        if (read_full(conn, hdr, 5, REQUEST_IDLE_MS) < 0) return -1;
        uint32_t len = ((uint32_t)hdr[1] << 24) | ((uint32_t)hdr[2] << 16) | ((uint32_t)hdr[3] << 8) | hdr[4];
        if (len > PATH_MAX) { send_error(conn, EPROTO, "field too long"); return -1; }
        char *p = malloc(len + 1);
        if (!p || read_full(conn, p, len, REQUEST_IDLE_MS) < 0) { free(p); return -1; }
        p[len] = 0;
        char type = (char)hdr[0];
        if (first) { bad = type != 'V' || len; first = 0; free(p); }
        else if (type == '.') { free(p); break; }
        else if (memchr(p, 0, len)) { bad = 1; free(p); }
        else if (type == 'p' && nroots < MAX_ROOTS && len) roots[nroots++] = p;
        else {
            long long v = 0;
            bad = parse_ll(p, &v);
            if (type == 'n') *maxn = v;
            else if (type == 'w') *since = v;
            else if (type == 'r' && v <= 1) *force = v;
            else bad = 1;
            free(p);
        }
        if (bad) {
            for (int i = 0; i < nroots; i++) free(roots[i]);
            send_error(conn, EPROTO, "bad watch request");
            return -1;
        }
    }
    int same = g_w.gen && nroots == g_w.nroots && *maxn == g_w.maxn;
    for (int i = 0; same && i < nroots; i++) same = !strcmp(roots[i], g_w.roots[i]);
    if (same) {
        for (int i = 0; i < nroots; i++) free(roots[i]);
        return 1;
    }
    for (int i = 0; i < g_w.nroots; i++) free(g_w.roots[i]);
    memcpy(g_w.roots, roots, (size_t)nroots * sizeof *roots);
    g_w.nroots = nroots;
    g_w.maxn = *maxn;
    return 0;
}

static void watch_request(int conn) {
    long long maxn, since, force, sent = 0;
    int same = watch_read(conn, &maxn, &since, &force), cut = 0;
    if (same < 0) return;
    int procs = ps_records(conn);
    if (procs < 0) return;
    watch_drain();
    int reason = !same || !since ? W_NEW : since != g_w.gen ? W_STALE : g_w.reason ? g_w.reason
               : force ? W_ASKED : W_DELTA;
    int rc = reason == W_DELTA ? watch_delta(conn, &sent, &cut) : watch_full(conn, &sent, &cut);
    if (rc < 0) { g_w.gen = 0; return; } /* the host is gone: the next look walks */
    g_w.gen = reason == W_DELTA ? g_w.gen + 1 : now_ns();
    static struct rec r;
    r.len = 0;
    rec_int(&r, 'n', procs);
    rec_int(&r, 'f', sent);
    rec_int(&r, 'k', cut);
    rec_int(&r, 'w', g_w.gen);
    rec_int(&r, 'm', reason == W_DELTA);
    rec_int(&r, 'r', reason);
    send_frame(conn, 'Z', r.buf, r.len);
}

/* The watcher's loop: drains the queue as it fills (fewer overflows), serves looks. */
static void watch_serve(int lfd) {
    for (;;) {
        struct pollfd p[2] = {{lfd, POLLIN, 0}, {g_w.ifd, POLLIN, 0}};
        if (poll(p, g_w.ifd >= 0 ? 2 : 1, -1) < 0 && errno != EINTR) _exit(1);
        if (g_w.ifd >= 0 && (p[1].revents & POLLIN)) watch_drain();
        if (!(p[0].revents & POLLIN)) continue;
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) continue;
        struct timeval tv = {SEND_TIMEOUT_S, 0};
        setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        watch_request(conn);
        close(conn);
    }
}

static int listen_socket(const char *path);

/* Binds PATH.w and forks the watcher; without it the host falls back to OBSERVE. */
static void start_watcher(const char *sock) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s.w", sock) >= (int)sizeof path) return;
    int lfd = listen_socket(path);
    if (lfd < 0) return;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != g_main_pid) _exit(0);
        if (g_obs_chan[0] >= 0) close(g_obs_chan[0]);
        if (g_obs_chan[1] >= 0) close(g_obs_chan[1]);
        watch_serve(lfd);
        _exit(0);
    }
    close(lfd);
    if (pid > 0) handler_slot(0, pid); /* hidden from PS, by pid */
    else logmsg("cannot fork the watcher: %s", strerror(errno));
}

/* DRAIN: the syscall records left in the ring (made by processes an earlier command left
 * running, after its reply) as 'y' frames; the observer asks at the end of a trial. */
static void op_drain(int conn) {
    int sent = send_syscalls(conn);
    if (sent < 0) return;
    static struct rec r;
    r.len = 0;
    rec_int(&r, 'y', sent);
    rec_int(&r, 'D', __atomic_exchange_n(&g_shared->dropped, 0, __ATOMIC_SEQ_CST));
    send_frame(conn, 'Z', r.buf, r.len);
}

/* ------------------------------------------------------------------ server */
static void op_ping(int conn) {
    static struct rec r;
    r.len = 0;
    rec_str(&r, 'v', PROTOCOL_VERSION);
    rec_int(&r, 'p', g_main_pid);
    rec_int(&r, 'u', g_agent_uid);
    rec_int(&r, 'g', g_agent_gid);
    rec_int(&r, 's', g_strict);
    rec_int(&r, 'r', g_allow_root);
    rec_int(&r, 'o', g_obs_chan[0] >= 0);
    rec_int(&r, 'y', g_ndeny);
    send_frame(conn, 'Z', r.buf, r.len);
}

static int make_sigfd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* One connection, in its own forked process. */
static void handle(int conn) {
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    struct timeval tv = {SEND_TIMEOUT_S, 0};
    setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int sigfd = make_sigfd();
    static struct request rq;
    if (sigfd < 0 || read_request(conn, &rq) < 0) return;
    switch (rq.op) {
    case 'H': op_ping(conn); break;
    case 'X': op_exec(conn, sigfd, &rq); break;
    case 'R': op_read(conn, &rq); break;
    case 'W': op_write(conn, &rq); break;
    case 'S': op_ps(conn); break;
    case 'F': op_fs(conn, &rq); break;
    case 'O': op_observe(conn, &rq); break;
    case 'Y': op_drain(conn); break;
    default: send_error(conn, EPROTO, "unknown op"); break;
    }
}

/* Prepares the socket directory and binds the listening socket. */
static int listen_socket(const char *path) {
    char dir[PATH_MAX];
    struct stat st;
    struct sockaddr_un addr;
    if (strlen(path) >= sizeof addr.sun_path) { logmsg("socket path too long"); return -1; }
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) { logmsg("mkdir %s: %s", dir, strerror(errno)); return -1; }
    if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) { logmsg("%s is not a directory", dir); return -1; }
    if (g_privileged) {
        if (st.st_uid == g_agent_uid) { logmsg("%s is owned by the agent's uid: refusing", dir); return -1; }
        if (st.st_uid == geteuid()) {
            if (chmod(dir, 0700) < 0) { logmsg("chmod %s: %s", dir, strerror(errno)); return -1; }
        } else if (st.st_mode & 077) {
            logmsg("%s is accessible to others: refusing", dir);
            return -1;
        }
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) { logmsg("%s exists and is not a socket", path); return -1; }
        unlink(path); /* stale socket of a previous run (restart) */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, strlen(path));
    mode_t old = umask(077);
    int r = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old);
    if (r < 0) { logmsg("bind %s: %s", path, strerror(errno)); return -1; }
    chmod(path, 0600);
    struct stat dst;
    if (g_privileged && lstat(dir, &dst) == 0 && dst.st_uid != geteuid()) {
        if (chown(path, dst.st_uid, (gid_t)-1) < 0) logmsg("chown socket: %s", strerror(errno));
    }
    if (listen(fd, 128) < 0) return -1;
    return fd;
}

static int usage(void) {
    fputs("usage: sandbox-executor serve --socket PATH --agent-uid N --agent-gid N "
          "[--strict] [--allow-root] [--service-uid N] [--observe-deny NAME:NR,...]\n", stderr);
    return 2;
}

/* Becomes uid/gid `uid` keeping the capabilities we hold (see --service-uid). Commands
 * and file helpers still clear every capability explicitly when they drop to a user. */
static int become_service_user(uid_t uid) {
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 ||
        setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 || setresuid(uid, uid, uid) < 0)
        return -1;
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    /* Leaving uid 0 emptied the effective set; raise it back to the permitted one. */
    struct cap_header h = {CAP_VERSION_3, 0};
    struct cap_data d[2];
    if (syscall(SYS_capget, &h, d) < 0) return -1;
    for (int i = 0; i < 2; i++) d[i].effective = d[i].permitted;
    if (syscall(SYS_capset, &h, d) < 0) return -1;
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* The base environment's locale: LC_CTYPE=C.UTF-8 (UTF-8 text; every other category is the
 * C locale, which C.UTF-8 equals there anyway), and only where the image has that locale:
 * glibc's compiled C.utf8, or musl (built in). Not LANG=C.UTF-8: glibc then loads all twelve
 * categories, each after a failed open under the unnormalised name (`bash -c :` makes 58 file
 * system calls instead of 22 -- each a FUSE request under fuse-overlayfs), and where the
 * locale is missing every bash warns that it cannot set it. An image or request that sets
 * LANG or LC_* keeps its own (they come after the base entries). */
static void locale_init(void) {
    static const char *const marks[] = {"/usr/lib/locale/C.utf8/LC_CTYPE",
                                        "/usr/lib/locale/C.UTF-8/LC_CTYPE",
                                        "/lib/ld-musl-x86_64.so.1", "/lib/ld-musl-aarch64.so.1"};
    struct stat st;
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (stat(marks[i], &st) == 0) { g_utf8_ctype = 1; return; }
}

int main(int argc, char **argv) {
    const char *sock = NULL;
    long long uid = -1, gid = -1, service = -1;
    if (argc < 2 || strcmp(argv[1], "serve") != 0) return usage();
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) sock = argv[++i];
        else if (!strcmp(argv[i], "--agent-uid") && i + 1 < argc) { if (parse_ll(argv[++i], &uid)) return usage(); }
        else if (!strcmp(argv[i], "--agent-gid") && i + 1 < argc) { if (parse_ll(argv[++i], &gid)) return usage(); }
        else if (!strcmp(argv[i], "--strict")) g_strict = 1;
        else if (!strcmp(argv[i], "--allow-root")) g_allow_root = 1;
        else if (!strcmp(argv[i], "--service-uid") && i + 1 < argc) { if (parse_ll(argv[++i], &service)) return usage(); }
        else if (!strcmp(argv[i], "--observe-deny") && i + 1 < argc) { if (parse_deny(argv[++i])) return usage(); }
        else if (!strcmp(argv[i], "--bash-env") && i + 1 < argc && g_nbash_env < MAX_ENV && strchr(argv[i + 1], '='))
            g_bash_env[g_nbash_env++] = argv[++i];
        else return usage();
    }
    if (!sock || uid < 0 || gid < 0 || uid > 0x7fffffff || gid > 0x7fffffff) return usage();
    g_agent_uid = (uid_t)uid;
    g_agent_gid = (gid_t)gid;
    g_privileged = (geteuid() == 0);
    if (!g_privileged && g_agent_uid != geteuid()) {
        logmsg("not root: --agent-uid must be our own uid (unprivileged test mode)");
        return 2;
    }
    if (service >= 0) {
        if (!g_privileged || service == 0 || service > 0x7fffffff || service == uid) {
            logmsg("--service-uid needs root and a uid that is neither 0 nor the agent's");
            return 2;
        }
        if (become_service_user((uid_t)service) < 0) {
            logmsg("cannot become the service uid %lld: %s", service, strerror(errno));
            return 1;
        }
    }
    g_main_pid = getpid();
    g_shared = mmap(NULL, sizeof *g_shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                    -1, 0);
    if (g_shared == MAP_FAILED) { logmsg("mmap: %s", strerror(errno)); return 1; }
    obs_init();
    g_filter_len = build_filter(g_filter, (int)(sizeof g_filter / sizeof g_filter[0]));
    locale_init();
    struct user warm;
    passwd_cached(g_agent_uid, &warm); /* fills the cache every handler inherits */
    start_warm();
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    int lfd = listen_socket(sock);
    if (lfd < 0 || sfd < 0) return 1;
    start_watcher(sock);
    logmsg("serving on %s (agent %u:%u%s%s)", sock, (unsigned)g_agent_uid, (unsigned)g_agent_gid,
           g_strict ? ", strict" : "", g_allow_root ? ", root allowed" : "");
    static struct pollfd p[3 + MAX_TREES];
    for (;;) {
        p[0] = (struct pollfd){lfd, POLLIN, 0};
        p[1] = (struct pollfd){sfd, POLLIN, 0};
        p[2] = (struct pollfd){g_obs_chan[0], POLLIN, 0};
        int ntrees = g_ntrees;
        for (int i = 0; i < ntrees; i++) p[3 + i] = (struct pollfd){g_trees[i].fd, POLLIN, 0};
        int r = poll(p, (nfds_t)(3 + ntrees), 1000);
        if (r < 0 && errno != EINTR) { logmsg("poll: %s", strerror(errno)); return 1; }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                /* With --service-uid (a container stopped by SIGKILL) a SIGTERM can only be
                 * init forwarding one a root command sent it: not a reason to stop. */
                if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && service < 0) {
                    unlink(sock);
                    return 0;
                }
            }
        }
        /* Notifications first (a command waits for each answer), last tree first so that
         * dropping one (moving the last into its slot) never skips another. */
        for (int i = ntrees - 1; i >= 0; i--) {
            if (p[3 + i].revents & POLLIN) obs_handle(&g_trees[i]);
            else if (p[3 + i].revents & (POLLHUP | POLLERR | POLLNVAL)) obs_drop_tree(i);
        }
        if (p[2].revents & POLLIN) obs_accept();
        main_reap();
        if (p[0].revents & POLLIN) {
            int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (conn < 0) continue;
            pid_t pid = fork_reclaiming();
            if (pid == 0) {
                close(lfd);
                close(sfd);
                for (int i = 0; i < g_ntrees; i++) close(g_trees[i].fd);
                g_ntrees = 0;
                if (g_obs_chan[0] >= 0) close(g_obs_chan[0]);
                /* Keep SIGCHLD blocked (read via the handler's signalfd); unblock the rest. */
                sigset_t term;
                sigemptyset(&term);
                sigaddset(&term, SIGTERM);
                sigaddset(&term, SIGINT);
                sigprocmask(SIG_UNBLOCK, &term, NULL);
                handle(conn);
                _exit(0);
            }
            if (pid > 0) handler_slot(0, pid);
            else if (errno == EAGAIN) send_pid_limit(conn, take_reclaimed());
            else send_error(conn, errno, "executor cannot fork: %s", strerror(errno));
            if (pid < 0) { /* read what the host sent, so closing does not reset the reply */
                char junk[4096];
                for (int i = 0; i < 64 && recv(conn, junk, sizeof junk, MSG_DONTWAIT) > 0; i++) {}
            }
            close(conn);
        }
    }
}
