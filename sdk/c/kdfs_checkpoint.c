/* The program's side of kDFS's checkpoint protocol: see kdfs_checkpoint.h and
 * docs/checkpoint.md. The other side is the `checkpoint` command (it makes
 * .v<SN>/request and a FIFO, signals us, reads our answers) and `restart`. */
#include "kdfs_checkpoint.h"
#include "xxh64.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t requested;
static int registered;
static char app[PATH_MAX];
static unsigned long rank;

static void on_sigusr2(int sig)
{
    (void)sig;
    requested = 1;
}

/* Decimal digits only: a typo in a variable must not quietly become rank 0. */
static int parse_ulong(const char *s, unsigned long *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return errno || *end ? -1 : 0;
}

/* 1 under `kdfs run` (app and rank set), 0 outside it, -1 on a bad value. */
static int load_env(void)
{
    const char *a = getenv("KDFS_CKPT_APP"), *r = getenv("KDFS_CKPT_RANK");
    if (!a || !*a)
        return 0;
    if (strlen(a) >= sizeof app) {
        errno = ENAMETOOLONG;
        return -1;
    }
    rank = 0;
    if (r && parse_ulong(r, &rank) < 0) {
        errno = EINVAL;
        return -1;
    }
    strcpy(app, a);
    return 1;
}

/* Both loops go on after EINTR and short counts: SA_RESTART does not cover
 * every file system, and a FUSE mount may return short counts. */
static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads up to n bytes; returns how many (fewer only at end of file), -1 on error. */
static ssize_t read_all(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Reads a small text file (request, task_<P>) into buf as a C string. */
static int read_text(int dfd, const char *name, char *buf, size_t size)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read_all(fd, buf, size - 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        errno = e;
        return -1;
    }
    buf[n] = '\0';
    return 0;
}

/* close() is checked: on a network file system it is where a write can fail. */
static int write_state(int dfd, const char *name, const void *state, size_t bytes)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (write_all(fd, state, bytes) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return close(fd);
}

/* O_NONBLOCK at open: with nobody reading (a `checkpoint` that gave up) open
 * fails with ENXIO instead of blocking the program forever. SIGPIPE is held
 * off so that a reader leaving mid-write costs an EPIPE, not the program. */
static int tell(const char *fifo, const char *msg)
{
    int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    sigset_t pipe_set, old, before;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&before);
    sigprocmask(SIG_BLOCK, &pipe_set, &old);
    /* blocking again, so that a full pipe waits; the line (< PIPE_BUF) stays whole */
    int flags = fcntl(fd, F_GETFL);
    int rc = flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ? -1 : write_all(fd, msg, strlen(msg));
    int e = errno;
    if (rc < 0 && e == EPIPE && !sigismember(&before, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero); /* the SIGPIPE our write raised */
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (close(fd) < 0 && rc == 0)
        return -1;
    errno = e;
    return rc;
}

/* Answers the checkpoint SN if it waits for us: 0 when answered `done` or not
 * ours to answer, -1 otherwise. */
static int answer(int dfd, unsigned long sn, const void *state, size_t bytes)
{
    long pid = (long)getpid();
    char done[64], name[96], msg[512], req[PATH_MAX + 16];
    snprintf(done, sizeof done, ".v%lu/done_%ld", sn, pid);
    if (faccessat(dfd, done, F_OK, 0) == 0)
        return 0;
    if (errno != ENOENT && errno != ENOTDIR)
        return -1;
    snprintf(name, sizeof name, ".v%lu/request", sn);
    if (read_text(dfd, name, req, sizeof req) < 0)
        /* gone: abandoned (or not a directory); not ours to answer */
        return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
    char *nl = strchr(req, '\n');
    if (!nl)
        return 0; /* still being written: its signal comes once it is whole */
    *nl = '\0';
    if (strncmp(req, "fifo=", 5) != 0 || !req[5]) {
        errno = EINVAL;
        return -1;
    }
    int rc = 0, e = 0;
    snprintf(name, sizeof name, ".v%lu/task_mm_%ld_v%lu.bin", sn, pid, sn);
    if (write_state(dfd, name, state, bytes) == 0) {
        snprintf(msg, sizeof msg, "done %ld %lu %zu %016llx\n", pid, rank, bytes, (unsigned long long)kdfs_xxh64(state, bytes));
    } else {
        e = errno;
        rc = -1;
        snprintf(msg, sizeof msg, "fail %ld %lu write %s: %s\n", pid, rank, name, strerror(e));
    }
    /* done_<PID> even after a failure: SN is abandoned, never answered twice */
    int fd = openat(dfd, done, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || close(fd) < 0) {
        if (rc == 0) {
            e = errno;
            rc = -1;
            snprintf(msg, sizeof msg, "fail %ld %lu create %s: %s\n", pid, rank, done, strerror(e));
        }
    }
    if (tell(req + 5, msg) < 0)
        return -1;
    errno = e;
    return rc;
}

static int by_number(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return (x > y) - (x < y);
}

int kdfs_ckpt_init(void)
{
    unsigned long node;
    int on = load_env();
    if (on <= 0)
        return on;
    if (parse_ulong(getenv("KDFS_CKPT_NODE"), &node) < 0) {
        errno = EINVAL;
        return -1;
    }
    /* the handler first: `checkpoint` signals us as soon as procs/ names us */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr2;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR2, &sa, NULL) < 0)
        return -1;
    int dfd = open(app, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    char name[64];
    snprintf(name, sizeof name, "procs/%lu.%ld", node, (long)getpid());
    int fd = -1;
    if (mkdirat(dfd, "procs", 0700) == 0 || errno == EEXIST)
        fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    int e = errno;
    if (fd >= 0 && close(fd) < 0) {
        e = errno;
        fd = -1;
    }
    close(dfd);
    errno = e;
    if (fd < 0)
        return -1;
    registered = 1;
    return 0;
}

int kdfs_ckpt_pending(void)
{
    return registered && requested;
}

int kdfs_ckpt_save(const void *state, size_t bytes)
{
    if (!registered)
        return 0;
    requested = 0; /* before the scan: a signal arriving during it is seen next time */
    DIR *d = opendir(app);
    if (!d)
        return -1;
    unsigned long *sns = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, e = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        unsigned long sn;
        /* .v<SN> as `checkpoint` names it: no sign, no leading zero */
        if (strncmp(ent->d_name, ".v", 2) != 0 || ent->d_name[2] == '0' || parse_ulong(ent->d_name + 2, &sn) < 0)
            continue;
        if (n == cap) {
            unsigned long *more = realloc(sns, (cap = cap ? 2 * cap : 8) * sizeof *sns);
            if (!more) {
                rc = -1;
                e = errno;
                break;
            }
            sns = more;
        }
        sns[n++] = sn;
    }
    if (rc == 0) {
        qsort(sns, n, sizeof *sns, by_number);
        for (size_t i = 0; i < n; i++)
            if (answer(dirfd(d), sns[i], state, bytes) < 0 && rc == 0) {
                rc = -1;
                e = errno;
            }
    }
    free(sns);
    closedir(d);
    errno = e;
    return rc;
}

/* task_<P>_v<SN>.bin whose rank= line is ours: 1 (pid set), 0 not ours, -1 error. */
static int task_of_rank(int dfd, const char *name, const char *suffix, char *pid, size_t size)
{
    size_t len = strlen(name), slen = strlen(suffix);
    if (strncmp(name, "task_", 5) != 0 || len <= 5 + slen || strcmp(name + len - slen, suffix) != 0)
        return 0;
    size_t plen = len - 5 - slen;
    if (plen >= size || strspn(name + 5, "0123456789") != plen)
        return 0;
    char text[4096];
    if (read_text(dfd, name, text, sizeof text) < 0)
        return -1;
    for (char *line = text; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        unsigned long r;
        if (strncmp(line, "rank=", 5) != 0)
            continue;
        char *end = line + 5 + strspn(line + 5, "0123456789");
        char saved = *end;
        *end = '\0';
        int ok = (saved == '\n' || saved == '\0') && parse_ulong(line + 5, &r) == 0;
        *end = saved;
        if (ok && r == rank) {
            memcpy(pid, name + 5, plen);
            pid[plen] = '\0';
            return 1;
        }
        return 0;
    }
    return 0;
}

long kdfs_ckpt_restore(void **state)
{
    *state = NULL;
    int on = load_env();
    if (on <= 0)
        return on;
    const char *s = getenv("KDFS_CKPT_RESTART_SN");
    unsigned long sn;
    if (!s || !*s)
        return 0;
    if (parse_ulong(s, &sn) < 0) {
        errno = EINVAL;
        return -1;
    }
    DIR *d = opendir(app);
    if (!d)
        return -1;
    char suffix[40], pid[32], name[96];
    snprintf(suffix, sizeof suffix, "_v%lu.bin", sn);
    int found = 0, e = ENOENT; /* no task of our rank: nothing to restore from */
    struct dirent *ent;
    while (!found && (ent = readdir(d)))
        if ((found = task_of_rank(dirfd(d), ent->d_name, suffix, pid, sizeof pid)) < 0)
            e = errno;
    long size = -1;
    int fd = -1;
    if (found > 0) {
        snprintf(name, sizeof name, "task_mm_%s_v%lu.bin", pid, sn);
        fd = openat(dirfd(d), name, O_RDONLY | O_CLOEXEC);
        e = errno;
    }
    closedir(d);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0) {
            e = errno;
            close(fd);
        }
        errno = e;
        return -1;
    }
    void *buf = st.st_size > LONG_MAX - 1 ? NULL : malloc((size_t)st.st_size + 1);
    ssize_t n = buf ? read_all(fd, buf, (size_t)st.st_size + 1) : -1;
    e = buf ? errno : (st.st_size > LONG_MAX - 1 ? EOVERFLOW : ENOMEM);
    close(fd);
    if (n >= 0 && n != st.st_size)
        e = EIO; /* changed size under us: not the state that was saved */
    else if (n >= 0)
        size = (long)n;
    if (size < 0) {
        free(buf);
        errno = e;
        return -1;
    }
    *state = buf;
    return size;
}
