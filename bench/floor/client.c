/* The bench's floor client: EXEC requests to the sandbox executor, the way DockerSession
 * sends them (one connection per request, opened O_PATH|O_NOFOLLOW, checked to be a
 * socket, connected through /proc/self/fd), with nothing else: the request is encoded
 * once, the reply read into one buffer.
 *
 *   client SOCKET N [-e NAME=VALUE]... [-d CWD] [-t TIMEOUT_MS] [-c CAP] [-y 0|1] -- ARGV...
 *
 * Prints one latency per request (ns, connect to final frame), then "cpu_ns N" (this
 * process's user+system time over all requests). Exits 1, saying why on stderr, on any
 * error or a command that did not exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME (256 * 1024)

static char request[1 << 20];
static size_t request_len;
static unsigned char reply[MAX_FRAME + 5];

static void die(const char *what) {
    fprintf(stderr, "floor client: %s: %s\n", what, errno ? strerror(errno) : "protocol");
    exit(1);
}

static void put_frame(char kind, const char *payload, size_t len) {
    if (request_len + 5 + len > sizeof request) {
        errno = E2BIG;
        die("request too long");
    }
    request[request_len] = kind;
    uint32_t be = htobe32((uint32_t)len);
    memcpy(request + request_len + 1, &be, 4);
    memcpy(request + request_len + 5, payload, len);
    request_len += 5 + len;
}

static void put_text(char kind, const char *text) { put_frame(kind, text, strlen(text)); }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void read_exact(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = 0;
            die("reading the reply");
        }
        got += (size_t)k;
    }
}

static int connect_socket(const char *path) {
    int pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0) die("opening the socket path");
    struct stat st;
    if (fstat(pfd, &st) < 0) die("fstat");
    if (!S_ISSOCK(st.st_mode)) {
        errno = ENOTSOCK;
        die("the socket path");
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d", pfd);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    close(pfd);
    return s;
}

/* The value of field `key` in a record, or NULL. */
static const unsigned char *field(const unsigned char *rec, size_t len, char key, size_t *vlen) {
    size_t pos = 0;
    while (pos + 5 <= len) {
        uint32_t be;
        memcpy(&be, rec + pos + 1, 4);
        size_t flen = be32toh(be);
        if (flen > len - pos - 5) return NULL;
        if (rec[pos] == (unsigned char)key) {
            *vlen = flen;
            return rec + pos + 5;
        }
        pos += 5 + flen;
    }
    return NULL;
}

/* One request; returns 0 when the command exited 0. */
static int exec_once(const char *path) {
    int s = connect_socket(path);
    size_t sent = 0;
    while (sent < request_len) {
        ssize_t k = write(s, request + sent, request_len - sent);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) die("sending the request");
        sent += (size_t)k;
    }
    for (;;) {
        read_exact(s, reply, 5);
        uint32_t be;
        memcpy(&be, reply + 1, 4);
        size_t len = be32toh(be);
        if (len > MAX_FRAME) {
            errno = 0;
            die("frame too long");
        }
        read_exact(s, reply + 5, len);
        char kind = (char)reply[0];
        if (kind == 'Z') {
            size_t vlen = 0;
            const unsigned char *x = field(reply + 5, len, 'x', &vlen);
            close(s);
            return x != NULL && vlen == 1 && x[0] == '0' ? 0 : 1;
        }
        if (kind == '!') {
            size_t vlen = 0;
            const unsigned char *m = field(reply + 5, len, 'm', &vlen);
            fprintf(stderr, "floor client: executor error: %.*s\n", (int)vlen, m ? (const char *)m : "");
            exit(1);
        }
        /* 'o', 'e', 'r', 'y' frames: output, survivors, syscall records -- not needed */
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s SOCKET N [-e NAME=VALUE]... [-d CWD] [-t MS] [-c CAP] "
                        "[-y 0|1] -- ARGV...\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    long n = strtol(argv[2], NULL, 10);
    const char *timeout = "30000", *cap = "1048576", *cwd = NULL, *observe = NULL;
    const char *env[256];
    int n_env = 0, i = 3;
    for (; i + 1 < argc && strcmp(argv[i], "--") != 0; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1];
        if (!strcmp(opt, "-e") && n_env < 256) env[n_env++] = val;
        else if (!strcmp(opt, "-d")) cwd = val;
        else if (!strcmp(opt, "-t")) timeout = val;
        else if (!strcmp(opt, "-c")) cap = val;
        else if (!strcmp(opt, "-y")) observe = val;
        else return 2;
    }
    if (n <= 0 || i + 1 >= argc || strcmp(argv[i], "--") != 0) return 2;
    /* in the order DockerSession's client sends them: argv, env, cwd, t, c, y */
    put_frame('X', "", 0);
    for (int a = i + 1; a < argc; a++) put_text('a', argv[a]);
    for (int e = 0; e < n_env; e++) put_text('e', env[e]);
    if (cwd) put_text('d', cwd);
    put_text('t', timeout);
    put_text('c', cap);
    if (observe) put_text('y', observe);
    put_frame('.', "", 0);

    uint64_t *samples = calloc((size_t)n, sizeof *samples);
    if (!samples) die("calloc");
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    for (long k = 0; k < n; k++) {
        uint64_t t0 = now_ns();
        if (exec_once(path) != 0) {
            fprintf(stderr, "floor client: the command did not exit 0\n");
            return 1;
        }
        samples[k] = now_ns() - t0;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    for (long k = 0; k < n; k++) printf("%llu\n", (unsigned long long)samples[k]);
    long long cpu = (c1.tv_sec - c0.tv_sec) * 1000000000LL + (c1.tv_nsec - c0.tv_nsec);
    printf("cpu_ns %lld\n", cpu);
    return 0;
}
