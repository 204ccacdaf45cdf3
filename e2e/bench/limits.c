/*
 * Physical limits of this machine that a broker cannot beat, measured in the same run
 * as the brokers (compiled by bench.py with the system gcc).
 *
 *   limits memcpy SECONDS   one core copying 64 MiB buffers; prints copied MB/s
 *   limits tcp SECONDS      one TCP connection on 127.0.0.1, 1 MiB writes, a second
 *                           process reading; prints received MB/s
 *   limits fsync DIR SECONDS  16 KiB appends to a new file in DIR, each followed by
 *                           fdatasync (what acks=all after fsync costs without group
 *                           commit); prints MB/s, p50 and p99 ms of one append+fdatasync
 *
 * MB = 10^6 bytes. Figures on one line of stdout; diagnostics on stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { COPY_BYTES = 64 << 20, IO_BYTES = 1 << 20, APPEND_BYTES = 16 << 10, MAX_APPENDS = 1 << 20 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int die(const char *what) {
    perror(what);
    return 1;
}

static int run_memcpy(double seconds) {
    char *src = malloc(COPY_BYTES), *dst = malloc(COPY_BYTES);
    if (!src || !dst) return die("malloc");
    /* Touch every page first so page faults are not part of the figure. */
    memset(src, 1, COPY_BYTES);
    memset(dst, 2, COPY_BYTES);
    uint64_t copied = 0;
    double start = now(), elapsed;
    do {
        memcpy(dst, src, COPY_BYTES);
        src[copied % COPY_BYTES] ^= dst[(copied / 7) % COPY_BYTES]; /* keep the copy observable */
        copied += COPY_BYTES;
        elapsed = now() - start;
    } while (elapsed < seconds);
    printf("%.1f\n", copied / elapsed / 1e6);
    fprintf(stderr, "memcpy: %llu bytes in %.3f s (checksum %d)\n", (unsigned long long)copied,
            elapsed, dst[12345]);
    return 0;
}

static int run_tcp(double seconds) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) return die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1) ||
        getsockname(listener, (struct sockaddr *)&addr, &len))
        return die("bind/listen");

    pid_t writer = fork();
    if (writer < 0) return die("fork");
    if (writer == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr)) _exit(die("connect"));
        char *buf = malloc(IO_BYTES);
        if (!buf) _exit(1);
        memset(buf, 'x', IO_BYTES);
        double start = now();
        /* The writer bounds the run; the reader times what actually arrived. */
        while (now() - start < seconds) {
            size_t off = 0;
            while (off < IO_BYTES) {
                ssize_t n = write(s, buf + off, IO_BYTES - off);
                if (n <= 0) _exit(die("write"));
                off += (size_t)n;
            }
        }
        close(s);
        _exit(0);
    }

    int conn = accept(listener, NULL, NULL);
    if (conn < 0) return die("accept");
    char *buf = malloc(IO_BYTES);
    if (!buf) return die("malloc");
    uint64_t received = 0;
    double first = 0, last = 0;
    for (;;) {
        ssize_t n = read(conn, buf, IO_BYTES);
        if (n < 0) return die("read");
        if (n == 0) break;
        if (received == 0) first = now();
        received += (uint64_t)n;
        last = now();
    }
    int status = 0;
    waitpid(writer, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || last <= first) {
        fprintf(stderr, "tcp: writer failed\n");
        return 1;
    }
    printf("%.1f\n", received / (last - first) / 1e6);
    fprintf(stderr, "tcp: %llu bytes in %.3f s\n", (unsigned long long)received, last - first);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_fsync(const char *dir, double seconds) {
    char path[4096];
    snprintf(path, sizeof path, "%s/limits-fsync-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) return die("mkstemp");
    unlink(path); /* gone when closed */
    char *buf = malloc(APPEND_BYTES);
    double *lat = malloc(sizeof(double) * MAX_APPENDS);
    if (!buf || !lat) return die("malloc");
    memset(buf, 'x', APPEND_BYTES);
    size_t n = 0;
    double start = now(), elapsed;
    do {
        double t = now();
        if (write(fd, buf, APPEND_BYTES) != APPEND_BYTES) return die("write");
        if (fdatasync(fd)) return die("fdatasync");
        lat[n++] = now() - t;
        elapsed = now() - start;
    } while (elapsed < seconds && n < MAX_APPENDS);
    close(fd);
    double mbps = (double)n * APPEND_BYTES / elapsed / 1e6;
    qsort(lat, n, sizeof(double), cmp_double);
    printf("%.1f %.3f %.3f\n", mbps, lat[n / 2] * 1e3, lat[(size_t)(n * 0.99)] * 1e3);
    fprintf(stderr, "fsync: %zu appends of %d bytes in %.3f s\n", n, APPEND_BYTES, elapsed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "fsync") == 0) {
        double seconds = atof(argv[3]);
        if (seconds <= 0 || seconds > 60) {
            fprintf(stderr, "SECONDS must be in (0, 60]\n");
            return 2;
        }
        return run_fsync(argv[2], seconds);
    }
    if (argc != 3) {
        fprintf(stderr, "usage: limits memcpy|tcp SECONDS | limits fsync DIR SECONDS\n");
        return 2;
    }
    double seconds = atof(argv[2]);
    if (seconds <= 0 || seconds > 60) {
        fprintf(stderr, "SECONDS must be in (0, 60]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(argv[1], "memcpy") == 0) return run_memcpy(seconds);
    if (strcmp(argv[1], "tcp") == 0) return run_tcp(seconds);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
