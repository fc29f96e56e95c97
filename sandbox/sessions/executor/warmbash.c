/*
 * warmbash: a bash loadable builtin that turns one bash process into a fork server for
 * the `bash -c COMMAND` requests of the executor (see "warm bash" in executor.c).
 *
 * Built as a shared object without any libc (-nostdlib, system calls made directly): it
 * is loaded into whatever bash the image has (glibc of any version, musl), so it may
 * use nothing but the kernel and four symbols every bash since 4.0 exports:
 * bind_variable, set_working_directory, dollar_dollar_pid and the builtin struct layout.
 * The executor embeds it and hands it to the zygote as a sealed memfd; nothing of it is
 * on a file system the agent can write.
 *
 * The zygote runs `bash -c 'enable -f /proc/self/fd/5 sbx_warm && exec 5<&- && sbx_warm
 * && eval "$BASH_EXECUTION_STRING"' bash` as the executor's own uid (the service uid or
 * root, never the agent's) with only SETUID, SETGID and SETPCAP (ambient), with exactly
 * the environment a cold `bash -c` would get. `sbx_warm` never returns in the zygote: it
 * reads requests (one SOCK_SEQPACKET message each, with four fds: the command's stdin,
 * stdout, stderr and a reply socket) from fd 3 and forks, per request:
 *   keeper (our uid, a subreaper, runs only the code below): forks the command, tells the
 *     handler its pid ('P'), reaps it and every orphan of its tree, reports the command's
 *     status and CPU ('X'), then, once no child is left, 'Q', and waits for the handler
 *     to hang up before exiting (so its pid, the root of the handler's tree walks, is not
 *     reused while the handler may still walk it).
 *   command (forked by the keeper): setsid, the fds, umask, the agent's ids with no
 *     capability at all and no_new_privs (as the executor's cold spawn), the cwd, the
 *     seccomp observer (its listener handed to the executor's main server), then `$$`,
 *     PWD, RANDOM, SECONDS and BASH_EXECUTION_STRING as a fresh `bash -c` has them, and
 *     `sbx_warm` returns 0: bash evaluates the command.
 * The agent can neither signal nor trace the zygote or a keeper (another uid; ptrace is
 * refused by the container's profile and the zygote is not dumpable), and the command's
 * memory is a copy: whatever the agent does to its shell does not reach the next one.
 */
typedef unsigned long size_t;
typedef long ssize_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
typedef unsigned short uint16_t;
typedef unsigned char uint8_t;

/* ---- bash's side (stable since bash 4) ---- */
struct word_desc { char *word; int flags; };
struct word_list { struct word_list *next; struct word_desc *word; };
struct builtin {
    char *name;
    int (*function)(struct word_list *);
    int flags;
    char *const *long_doc;
    const char *short_doc;
    char *handle;
};
extern void *bind_variable(const char *name, char *value, int flags);
extern void set_working_directory(char *name);
extern int dollar_dollar_pid;

/* ---- system calls ---- */
#if defined(__x86_64__)
enum { NR_read = 0, NR_write = 1, NR_close = 3, NR_rt_sigaction = 13, NR_rt_sigprocmask = 14,
       NR_pipe2 = 293, NR_getpid = 39, NR_sendmsg = 46, NR_recvmsg = 47, NR_clone = 56,
       NR_exit = 60, NR_wait4 = 61, NR_chdir = 80, NR_umask = 95, NR_getrusage = 98,
       NR_setresuid = 117, NR_getresuid = 118, NR_setresgid = 119, NR_setgroups = 116,
       NR_capget = 125, NR_capset = 126, NR_prctl = 157, NR_setsid = 112, NR_dup3 = 292,
       NR_getcwd = 79, NR_exit_group = 231, NR_seccomp = 317, NR_close_range = 436,
       NR_fcntl = 72, NR_getrandom = 318 };
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
enum { NR_read = 63, NR_write = 64, NR_close = 57, NR_rt_sigaction = 134, NR_rt_sigprocmask = 135,
       NR_pipe2 = 59, NR_getpid = 172, NR_sendmsg = 211, NR_recvmsg = 212, NR_clone = 220,
       NR_exit = 93, NR_wait4 = 260, NR_chdir = 49, NR_umask = 166, NR_getrusage = 165,
       NR_setresuid = 147, NR_getresuid = 148, NR_setresgid = 149, NR_setgroups = 159,
       NR_capget = 90, NR_capset = 91, NR_prctl = 167, NR_setsid = 157, NR_dup3 = 24,
       NR_getcwd = 17, NR_exit_group = 94, NR_seccomp = 277, NR_close_range = 436,
       NR_fcntl = 25, NR_getrandom = 278 };
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
#else
#error "warmbash: x86_64 or aarch64 only"
#endif
#define S_(n, a, b, c, d, e, f, ...) sys6((long)(n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
#define SYS(...) S_(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)
#define FAILED(r) ((unsigned long)(r) > -4096UL)

/* The compiler may emit calls to these. */
__attribute__((visibility("hidden"))) void *memset(void *d, int c, size_t n) {
    unsigned char *p = d;
    while (n--) *p++ = (unsigned char)c;
    return d;
}
__attribute__((visibility("hidden"))) void *memcpy(void *d, const void *s, size_t n) {
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--) *p++ = *q++;
    return d;
}
static size_t slen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }

/* ---- the request (executor.c writes it: keep the two in step) ---- */
#define WARM_MAGIC 0x5342574dU /* "SBWM" */
#define WARM_OBSERVE 1U
#define WARM_DROP 2U
struct warm_req {
    uint32_t magic, flags;
    int64_t serial;
    uint32_t uid, gid;
    uint32_t cwd_len, home_len, cmd_len, filter_len; /* filter_len: BPF instructions */
};
struct warm_rep { int32_t type, pid, status, err; int64_t utime_us, stime_us, maxrss_kb; };
#define WARM_MAX (128 * 1024)

struct sock_filter { uint16_t code; uint8_t jt, jf; uint32_t k; };
struct sock_fprog { unsigned short len; struct sock_filter *filter; };
struct iovec { void *base; size_t len; };
struct msghdr {
    void *name; uint32_t namelen; struct iovec *iov; size_t iovlen;
    void *control; size_t controllen; int flags;
};
struct cmsghdr { size_t len; int level, type; };
struct ksigaction { void *handler; unsigned long flags; void *restorer; unsigned long mask; };
struct timeval { long sec, usec; };
struct rusage { struct timeval utime, stime; long maxrss, rest[13]; };
struct cap_header { uint32_t version; int pid; };
struct cap_data { uint32_t effective, permitted, inheritable; };

#define SOL_SOCKET 1
#define SCM_RIGHTS 1
#define MSG_CMSG_CLOEXEC 0x40000000
#define MSG_NOSIGNAL 0x4000
#define O_CLOEXEC 02000000
#define F_DUPFD_CLOEXEC 1030
#define EINTR 4
#define ECHILD 10
#define EINVAL 22
#define EPERM 1
#define SIGCHLD 17
#define SIGKILL 9
#define PR_SET_PDEATHSIG 1
#define PR_SET_DUMPABLE 4
#define PR_SET_KEEPCAPS 8
#define PR_CAPBSET_DROP 24
#define PR_SET_CHILD_SUBREAPER 36
#define PR_SET_NO_NEW_PRIVS 38
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#define CLONE_FILES 0x400
#define SC_SET_MODE_FILTER 1
#define SC_FLAG_NEW_LISTENER 8

static unsigned char g_buf[sizeof(struct warm_req) + WARM_MAX + 8];
static struct ksigaction g_bash_chld; /* bash's SIGCHLD handler, for the command */

static void say(int fd, const char *a, const char *b, const char *c) {
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) if (parts[i]) SYS(NR_write, fd, parts[i], slen(parts[i]));
}

static const char *errname(long e) {
    switch (e) {
    case 1: return "Operation not permitted";
    case 2: return "No such file or directory";
    case 13: return "Permission denied";
    case 20: return "Not a directory";
    case 36: return "File name too long";
    case 40: return "Too many levels of symbolic links";
    default: return "error";
    }
}

static void send_rep(int fd, int type, int pid, int status, int err, const struct rusage *ru) {
    struct warm_rep r = {type, pid, status, err, 0, 0, 0};
    if (ru) {
        r.utime_us = ru->utime.sec * 1000000LL + ru->utime.usec;
        r.stime_us = ru->stime.sec * 1000000LL + ru->stime.usec;
        r.maxrss_kb = ru->maxrss;
    }
    struct iovec io = {&r, sizeof r};
    struct msghdr m = {0, 0, &io, 1, 0, 0, 0};
    SYS(NR_sendmsg, fd, &m, MSG_NOSIGNAL);
}

static __attribute__((noreturn)) void die(int code) {
    for (;;) SYS(NR_exit_group, code);
}

/* As the executor's spawn_drop_privileges: the agent's ids, every capability set and the
 * bounding set emptied, verified; then no_new_privs. */
static long drop_privileges(const struct warm_req *q) {
    long r;
    if (q->flags & WARM_DROP) {
        if (FAILED(r = SYS(NR_setgroups, 0, 0))) return r;
        if (FAILED(r = SYS(NR_setresgid, q->gid, q->gid, q->gid))) return r;
        for (int cap = 0; cap < 64; cap++) {
            r = SYS(NR_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0);
            if (r == -EINVAL) break;
            if (FAILED(r)) return r;
        }
        SYS(NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        if (FAILED(r = SYS(NR_prctl, PR_SET_KEEPCAPS, 0, 0, 0, 0))) return r;
        if (FAILED(r = SYS(NR_setresuid, q->uid, q->uid, q->uid))) return r;
        struct cap_header h = {0x20080522, 0};
        struct cap_data d[2] = {{0, 0, 0}, {0, 0, 0}};
        if (FAILED(r = SYS(NR_capset, &h, d))) return r;
        uint32_t ids[3] = {1, 1, 1};
        if (FAILED(SYS(NR_getresuid, &ids[0], &ids[1], &ids[2])) || ids[0] != q->uid ||
            ids[1] != q->uid || ids[2] != q->uid)
            return -EPERM;
        if (FAILED(r = SYS(NR_capget, &h, d))) return r;
        for (int i = 0; i < 2; i++)
            if (d[i].effective || d[i].permitted || d[i].inheritable) return -EPERM;
    }
    r = SYS(NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return FAILED(r) ? r : 0;
}

/* The observer: the filter with a listener, handed to the main server (over obs) by a
 * helper started before the filter (our own sendmsg would then wait for that listener). */
static long observe(const struct warm_req *q, struct sock_filter *prog, int obs) {
    int sync[2];
    long r = SYS(NR_pipe2, sync, O_CLOEXEC);
    if (FAILED(r)) return r;
    int self = (int)SYS(NR_getpid);
    long helper = SYS(NR_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
    if (FAILED(helper)) return helper;
    if (helper == 0) {
        SYS(NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        int fd = -1;
        if (SYS(NR_read, sync[0], &fd, sizeof fd) != (long)sizeof fd || fd < 0) die(1);
        struct { int pid; int pad; int64_t serial; int32_t warm, pad2; } msg = {self, 0, q->serial, 1, 0};
        union { char b[24]; struct cmsghdr h; } c;
        memset(&c, 0, sizeof c);
        c.h.len = sizeof(struct cmsghdr) + sizeof(int);
        c.h.level = SOL_SOCKET;
        c.h.type = SCM_RIGHTS;
        memcpy(c.b + sizeof(struct cmsghdr), &fd, sizeof fd);
        struct iovec io = {&msg, sizeof msg};
        struct msghdr m = {0, 0, &io, 1, c.b, sizeof c.b, 0};
        long s;
        do s = SYS(NR_sendmsg, obs, &m, MSG_NOSIGNAL); while (s == -EINTR);
        die(FAILED(s) ? 2 : 0);
    }
    struct sock_fprog fp = {(unsigned short)q->filter_len, prog};
    long lfd = SYS(NR_seccomp, SC_SET_MODE_FILTER, SC_FLAG_NEW_LISTENER, &fp);
    int fdv = FAILED(lfd) ? -1 : (int)lfd;
    long w = SYS(NR_write, sync[1], &fdv, sizeof fdv);
    int st = 0;
    while (SYS(NR_wait4, helper, &st, 0, 0) == -EINTR) {}
    SYS(NR_close, sync[0]);
    SYS(NR_close, sync[1]);
    if (FAILED(lfd)) return lfd;
    SYS(NR_close, lfd);
    if (w != (long)sizeof fdv || (st & 0x7f) || ((st >> 8) & 0xff)) return -32; /* EPIPE */
    return 0;
}

static void set_int(const char *name, unsigned long long v) {
    char num[24];
    int i = (int)sizeof num - 1;
    num[i] = 0;
    do num[--i] = (char)('0' + v % 10); while ((v /= 10) && i > 0);
    bind_variable(name, num + i, 0);
}

/* In the command (forked by the keeper): becomes what the executor's spawn makes of a
 * command child, then lets bash run it. Exits 126 (with a message) on failure. */
static void command(struct warm_req *q, int fds[4], int obs) {
    char *cwd = (char *)(q + 1), *home = cwd + q->cwd_len + 1, *cmd = home + q->home_len + 1;
    struct sock_filter *prog = (struct sock_filter *)(g_buf + ((sizeof *q + q->cwd_len + q->home_len +
                                                              q->cmd_len + 3 + 7) & ~7UL));
    SYS(NR_setsid);
    unsigned long none = 0;
    SYS(NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &none, 0, 8);
    /* fds: the observer's channel above the standard ones, then 0-2, nothing else. */
    int ob = -1;
    if (q->flags & WARM_OBSERVE) {
        long r = SYS(NR_fcntl, obs, F_DUPFD_CLOEXEC, 10);
        if (FAILED(r)) die(126);
        ob = (int)r;
    }
    if (FAILED(SYS(NR_dup3, fds[0], 0, 0)) || FAILED(SYS(NR_dup3, fds[1], 1, 0)) ||
        FAILED(SYS(NR_dup3, fds[2], 2, 0)))
        die(126);
    if (ob >= 0) {
        if (FAILED(SYS(NR_dup3, ob, 3, O_CLOEXEC))) die(126);
        ob = 3;
        SYS(NR_close_range, 4U, ~0U, 0);
    } else {
        SYS(NR_close_range, 3U, ~0U, 0);
    }
    SYS(NR_umask, 022);
    long r = drop_privileges(q);
    if (FAILED(r)) { say(2, "sandbox-executor: cannot drop privileges: ", errname(-r), "\n"); die(126); }
    /* The kernel made us non-dumpable when the ids changed; a cold command's exec makes it
     * dumpable again. This memory is the agent's shell now (a copy of the zygote's: the
     * agent's environment, this command): the listener must be able to read the execs
     * and connects of the processes bash forks, as it reads a cold command's. */
    SYS(NR_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
    if (*cwd) {
        if (cwd[0] != '/' && FAILED(r = SYS(NR_chdir, home))) {
            say(2, "sandbox-executor: cd ", home, ": "); say(2, errname(-r), "\n", 0); die(126);
        }
        if (FAILED(r = SYS(NR_chdir, cwd))) {
            say(2, "sandbox-executor: cd ", cwd, ": "); say(2, errname(-r), "\n", 0); die(126);
        }
    } else if (FAILED(SYS(NR_chdir, home)) && FAILED(SYS(NR_chdir, "/"))) {
        die(126);
    }
    if (ob >= 0) {
        if (FAILED(r = observe(q, prog, ob))) {
            say(2, "sandbox-executor: cannot start the syscall observer: ", errname(-r), "\n");
            die(126);
        }
        SYS(NR_close, ob);
    }
    SYS(NR_rt_sigaction, SIGCHLD, &g_bash_chld, 0, 8);
    /* What a fresh `bash -c` has. */
    dollar_dollar_pid = (int)SYS(NR_getpid);
    static char here[4096];
    long n = SYS(NR_getcwd, here, sizeof here);
    if (!FAILED(n) && n > 0) {
        set_working_directory(here);
        bind_variable("PWD", here, 0);
    }
    unsigned int seed = 0;
    SYS(NR_getrandom, &seed, sizeof seed, 0);
    set_int("RANDOM", seed & 0x7fff);
    set_int("SECONDS", 0);
    bind_variable("BASH_EXECUTION_STRING", cmd, 0);
}

/* The keeper: never returns, except in the command it forks (then 0). */
static int keeper(struct warm_req *q, int fds[4], int obs) {
    int reply = fds[3];
    SYS(NR_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    struct ksigaction dfl = {0, 0, 0, 0};
    SYS(NR_rt_sigaction, SIGCHLD, &dfl, 0, 8);
    long pid = SYS(NR_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        command(q, fds, obs);
        return 0;
    }
    for (int i = 0; i < 3; i++) SYS(NR_close, fds[i]);
    SYS(NR_close, obs);
    if (FAILED(pid)) { send_rep(reply, 'E', 0, 0, (int)-pid, 0); die(0); }
    send_rep(reply, 'P', (int)pid, (int)SYS(NR_getpid), 0, 0); /* status: the keeper */
    for (;;) {
        int st = 0;
        struct rusage ru;
        long w = SYS(NR_wait4, -1, &st, 0, &ru);
        if (w == -EINTR) continue;
        if (FAILED(w)) break; /* ECHILD: no child left */
        if (w == pid) {
            SYS(NR_getrusage, -1 /* RUSAGE_CHILDREN */, &ru);
            send_rep(reply, 'X', (int)pid, st, 0, &ru);
        }
    }
    send_rep(reply, 'Q', 0, 0, 0, 0);
    char b;
    while (SYS(NR_read, reply, &b, 1) == -EINTR) {}
    die(0);
}

static int sbx_warm(struct word_list *args) {
    (void)args;
    const int ctl = 3, obs = 4;
    SYS(NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
    SYS(NR_rt_sigaction, SIGCHLD, 0, &g_bash_chld, 8);
    for (;;) {
        union { char b[64]; struct cmsghdr h; } c;
        memset(&c, 0, sizeof c);
        struct iovec io = {g_buf, sizeof g_buf - 8};
        struct msghdr m = {0, 0, &io, 1, c.b, sizeof c.b, 0};
        long n = SYS(NR_recvmsg, ctl, &m, MSG_CMSG_CLOEXEC);
        if (n == -EINTR) continue;
        if (FAILED(n) || n == 0) return 1; /* the executor is gone */
        int fds[4] = {-1, -1, -1, -1}, nfd = 0;
        if (m.controllen >= sizeof(struct cmsghdr) && c.h.level == SOL_SOCKET && c.h.type == SCM_RIGHTS)
            nfd = (int)((c.h.len - sizeof(struct cmsghdr)) / sizeof(int));
        if (nfd > 4) nfd = 4;
        memcpy(fds, c.b + sizeof(struct cmsghdr), (size_t)nfd * sizeof(int));
        struct warm_req *q = (struct warm_req *)g_buf;
        unsigned long need = sizeof *q;
        if ((size_t)n >= sizeof *q)
            need = ((sizeof *q + q->cwd_len + q->home_len + q->cmd_len + 3 + 7) & ~7UL) +
                   (unsigned long)q->filter_len * sizeof(struct sock_filter);
        if (nfd != 4 || (size_t)n < sizeof *q || q->magic != WARM_MAGIC || need != (unsigned long)n) {
            for (int i = 0; i < nfd; i++) SYS(NR_close, fds[i]);
            continue;
        }
        char *s = (char *)(q + 1);
        s[q->cwd_len] = 0;
        s[q->cwd_len + 1 + q->home_len] = 0;
        s[q->cwd_len + q->home_len + 2 + q->cmd_len] = 0;
        long pid = SYS(NR_clone, SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) {
            SYS(NR_close, ctl);
            return keeper(q, fds, obs);
        }
        if (FAILED(pid)) send_rep(fds[3], 'E', 0, 0, (int)-pid, 0);
        for (int i = 0; i < 4; i++) SYS(NR_close, fds[i]);
        /* Keepers that ended (where bash's own SIGCHLD handler did not reap them). */
        int st;
        while (SYS(NR_wait4, -1, &st, 1 /* WNOHANG */, 0) > 0) {}
    }
}

static char *const sbx_warm_doc[] = {"The sandbox executor's fork server (not for use by hand).", 0};
__attribute__((visibility("default"))) struct builtin sbx_warm_struct = {
    "sbx_warm", sbx_warm, 1 /* BUILTIN_ENABLED */, sbx_warm_doc, "sbx_warm", 0,
};
