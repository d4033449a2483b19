/*
 * The spawner thread in C: what cni_async/_libcni/spawner.py does in Python, step for step,
 * on a thread that never takes the GIL. Loaded through ctypes by cni_async/_libcni/native.py,
 * which falls back on the Python thread where this file was not built.
 *
 * One thread per process runs every plugin from its spawn to its reap: it makes the run's
 * pipes, writes its stdin, spawns it (posix_spawn, in a session of its own, with an empty
 * signal mask and SIGPIPE and SIGXFSZ at their defaults), serves its pipes and pidfd from an
 * epoll instance of its own, stops it when asked, reaps it, and then writes the run's "done"
 * eventfd, the one thing the event loop waits for.
 *
 * Ownership: the loop thread makes a run (sl_new), hands it over (sl_submit) and, once "done"
 * is readable, reads its result and frees it (sl_free). It may withdraw a run still queued
 * (sl_withdraw), ask for a stop (sl_stop) or leave "done" and the run to this thread
 * (sl_abandon). Everything else of a run is this thread's. The lock guards the queue, each
 * run's state, its stop request and its abandonment; this thread never holds it while it
 * spawns, signals or waits.
 *
 * A run finished while a batch of epoll events is handled is released (done written, or
 * freed if abandoned) only after the whole batch: an event of the batch may still name it.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The SHA-256 of this file, which the build passes in: native.py uses a library built from
 * exactly the source beside it, or none. */
#ifndef SL_SOURCE_HASH
#define SL_SOURCE_HASH "unknown"
#endif

enum { QUEUED = 0, RUNNING = 1, FINISHED = 2, WITHDRAWN = 3 };
enum { STOP_NONE = 0, STOP_TERM = 1, STOP_KILL = 2 };
enum { NOTE_PIPES_OPEN = 1, NOTE_UNREAPED = 2 };
/* A run's descriptors, by kind; the kind travels in the low bits of an epoll event's data. */
enum { K_WAKE = 0, K_PIDFD = 1, K_STDIN = 2, K_OUT = 3, K_ERR = 4, K_COUNT = 5, K_MASK = 7 };

#define READ_SIZE 65536
#define READS_PER_EVENT 16 /* a flood cannot hold the thread from the other runs */
#define STDERR_TAIL (16 * 1024)
#define REAP_LIMIT 10.0
#define GROUP_POLL 0.01
#define MAX_EVENTS 64

/* What the loop thread reads once "done" is readable; mirrored in native.py. */
struct sl_result {
    int32_t state;
    int32_t error;       /* errno of a run that could not be started, or that broke */
    int32_t pid;         /* 0: never started, or reaped by someone else before it was watched */
    int32_t status;      /* the wait status */
    int32_t status_lost; /* something else reaped it */
    int32_t overflow;    /* stdout passed max_output: the group was killed */
    int32_t notes;       /* NOTE_* for the loop thread to log */
    int32_t reserved;
    char *out;
    uint64_t out_len;
    char *err;
    uint64_t err_len;
};

struct sl_run {
    struct sl_result r; /* first: native.py reads it through the run's pointer */
    char *path;
    char **envp;
    char *env_block;
    char *stdin_data;
    size_t stdin_len, stdin_off;
    int held, done;
    size_t max_output;
    double kill_grace, pipe_grace;
    /* The loop thread's requests (under the lock). */
    int stop_req, abandoned;
    /* This thread's. */
    int stop, over, exited;
    int fds[K_COUNT];
    int registered[K_COUNT];
    double stop_deadline, pipe_deadline, deadline; /* 0: none */
    size_t out_cap;
    struct sl_run *next, *prev; /* the queue (next only), or the running list */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_run *queue_head, *queue_tail; /* submitted, not yet taken */
static struct sl_run *running;                 /* this thread's, doubly linked */
static struct sl_run *released;                /* finished in this batch */
static int wake_fd = -1, ep_fd = -1, started;
static posix_spawnattr_t attr;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t tag(struct sl_run *run, int kind) {
    return (uint64_t)(uintptr_t)run | (uint64_t)kind; /* runs are malloc'd: 16-byte aligned */
}

/* Watch one of the run's descriptors for one event (one-shot): 0, or an errno. */
static int arm(struct sl_run *run, int kind, uint32_t events) {
    struct epoll_event ev = {.events = events | EPOLLONESHOT, .data.u64 = tag(run, kind)};
    int op = run->registered[kind] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(ep_fd, op, run->fds[kind], &ev) < 0) return errno;
    run->registered[kind] = 1;
    return 0;
}

static void close_fd(struct sl_run *run, int kind) {
    int fd = run->fds[kind];
    if (fd < 0) return;
    /* Out of the epoll instance first: a copy that a concurrent fork holds for a moment
     * must not report events for a run that is gone. */
    if (run->registered[kind]) epoll_ctl(ep_fd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    run->fds[kind] = -1;
    run->registered[kind] = 0;
}

static void finish(struct sl_run *run) {
    if (run->over) return;
    for (int kind = K_PIDFD; kind < K_COUNT; kind++) close_fd(run, kind);
    run->over = 1;
    run->deadline = 0;
    if (run->prev) run->prev->next = run->next;
    else if (running == run) running = run->next;
    if (run->next) run->next->prev = run->prev;
    run->prev = NULL;
    run->next = released;
    released = run;
}

static void free_run(struct sl_run *run) {
    free(run->r.out);
    free(run->r.err);
    free(run->path);
    free(run->envp);
    free(run->env_block);
    free(run->stdin_data);
    free(run);
}

/* After a batch: hand each finished run back (done written), or free it if abandoned. */
static void release_finished(void) {
    while (released) {
        struct sl_run *run = released;
        released = run->next;
        run->next = NULL;
        int abandoned;
        pthread_mutex_lock(&lock);
        run->r.state = FINISHED;
        abandoned = run->abandoned;
        if (abandoned) close(run->done);
        else eventfd_write(run->done, 1);
        pthread_mutex_unlock(&lock);
        if (abandoned) free_run(run);
    }
}

static void signal_group(struct sl_run *run, int signum) {
    /* Only before reaping, while the zombie keeps the group ID from being recycled; never
     * with no PID: killpg(0) would signal our own group. */
    if (run->r.pid > 0) killpg(run->r.pid, signum);
}

static void kill_group(struct sl_run *run, double now) {
    signal_group(run, SIGKILL);
    run->stop = STOP_KILL;
    run->stop_deadline = now + REAP_LIMIT;
}

static void kill_and_reap(pid_t pid) {
    int status;
    killpg(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

static void reap_and_finish(struct sl_run *run) {
    if (run->r.pid <= 0) { /* reaped elsewhere before it could be watched */
        run->r.status_lost = 1;
        finish(run);
        return;
    }
    int status, rc;
    while ((rc = waitpid(run->r.pid, &status, 0)) < 0 && errno == EINTR) {
    }
    if (rc < 0) run->r.status_lost = 1; /* SIGCHLD ignored, or a waitpid(-1) elsewhere */
    else run->r.status = status;
    finish(run);
}

/* Something unforeseen broke the run: kill and reap its plugin, and hand err over. */
static void fail(struct sl_run *run, int err) {
    if (run->over) return;
    if (!run->r.error) run->r.error = err;
    if (run->r.pid > 0) kill_and_reap(run->r.pid);
    run->r.pid = 0;
    finish(run);
}

/* Whether a process other than the group leader pgid is in process group pgid (and not a
 * zombie). Where /proc cannot be listed the answer is yes: the caller then waits out its
 * grace period and kills the group. */
static int group_has_others(pid_t pgid) {
    DIR *dir = opendir("/proc");
    if (!dir) return 1;
    struct dirent *entry;
    int found = 0;
    char path[64], buf[512];
    while (!found && (entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        if (!isdigit((unsigned char)name[0])) continue;
        long pid = strtol(name, NULL, 10);
        if (pid == pgid) continue;
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        char *end = strrchr(buf, ')'); /* after the command: state, ppid, pgrp */
        char state;
        long ppid, pgrp;
        if (end && sscanf(end + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3 && pgrp == pgid &&
            state != 'Z')
            found = 1;
    }
    closedir(dir);
    return found;
}

static void advance(struct sl_run *run);

static void advance_stop(struct sl_run *run, double now) {
    if (!run->r.pid) {
        run->r.status_lost = 1;
        finish(run);
        return;
    }
    if (run->stop == STOP_TERM && now < run->stop_deadline) {
        /* SIGTERM went to the plugin alone: its helpers get until the deadline to finish on
         * their own. Its pidfd says when it exited; a walk of /proc, every 10 ms from then
         * on, whether the rest of its group did. */
        if (!run->exited) {
            run->deadline = run->stop_deadline;
            return;
        }
        if (group_has_others(run->r.pid)) {
            double poll = now + GROUP_POLL;
            run->deadline = poll < run->stop_deadline ? poll : run->stop_deadline;
            return;
        }
    }
    if (run->stop == STOP_TERM) kill_group(run, now); /* its children may remain */
    if (run->exited) {
        reap_and_finish(run);
    } else if (now >= run->stop_deadline) {
        run->r.notes |= NOTE_UNREAPED;
        run->r.status = SIGKILL; /* a wait status: killed by SIGKILL */
        finish(run);
    } else {
        run->deadline = run->stop_deadline;
    }
}

static void advance(struct sl_run *run) {
    if (run->over) return;
    double now = now_s();
    if (run->stop_deadline) {
        advance_stop(run, now);
        return;
    }
    if (!run->exited) return; /* the pidfd wakes the thread */
    if (run->fds[K_OUT] < 0 && run->fds[K_ERR] < 0) {
        reap_and_finish(run);
        return;
    }
    /* The plugin is gone but something still holds its pipes (a child of it?). */
    if (!run->pipe_deadline) run->pipe_deadline = now + run->pipe_grace;
    if (now >= run->pipe_deadline) {
        run->r.notes |= NOTE_PIPES_OPEN;
        signal_group(run, SIGKILL);
        reap_and_finish(run);
    } else {
        run->deadline = run->pipe_deadline;
    }
}

static void on_stop(struct sl_run *run) {
    if (run->over) return;
    double now = now_s();
    if (run->stop_deadline) { /* a stop under way; a kill turns a gentle one into a kill */
        if (run->stop == STOP_KILL && run->r.pid) kill_group(run, now);
        advance(run);
        return;
    }
    if (!run->r.pid) { /* nothing to signal: it is gone */
        run->stop_deadline = now;
        advance(run);
        return;
    }
    if (run->stop == STOP_KILL) {
        kill_group(run, now);
    } else {
        kill(run->r.pid, SIGTERM); /* the zombie pins the PID until we reap */
        run->stop_deadline = now + run->kill_grace;
    }
    advance(run);
}

/* Write what stdin the pipe takes; the rest as it drains. Returns 0, or an errno. */
static int write_stdin(struct sl_run *run) {
    int fd = run->fds[K_STDIN];
    while (run->stdin_off < run->stdin_len) {
        ssize_t n = write(fd, run->stdin_data + run->stdin_off, run->stdin_len - run->stdin_off);
        if (n >= 0) {
            run->stdin_off += (size_t)n;
            continue;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return arm(run, K_STDIN, EPOLLOUT); /* the pipe is full */
        if (errno != EPIPE && errno != ECONNRESET) return errno;
        break; /* it exited or closed stdin early */
    }
    close_fd(run, K_STDIN);
    return 0;
}

/* Append a chunk of stderr to what is kept of it: its last STDERR_TAIL bytes. */
static void keep_tail(struct sl_result *r, const char *chunk, size_t n) {
    if (n >= STDERR_TAIL) {
        memcpy(r->err, chunk + (n - STDERR_TAIL), STDERR_TAIL);
        r->err_len = STDERR_TAIL;
        return;
    }
    if (r->err_len + n > STDERR_TAIL) {
        size_t drop = r->err_len + n - STDERR_TAIL;
        memmove(r->err, r->err + drop, r->err_len - drop);
        r->err_len -= drop;
    }
    memcpy(r->err + r->err_len, chunk, n);
    r->err_len += n;
}

/* Read what the pipe has: 1 to wait for more, 0 at its end (or once stdout passed
 * max_output), or -errno. A short read has emptied the pipe: if every writer had closed it
 * when it was polled (EPOLLHUP), that is its end. */
static int read_pipe(struct sl_run *run, int kind, uint32_t events) {
    static char chunk[READ_SIZE];
    int fd = run->fds[kind];
    for (int i = 0; i < READS_PER_EVENT; i++) {
        char *into = chunk;
        if (kind == K_OUT) {
            if (run->out_cap - run->r.out_len < READ_SIZE) {
                size_t cap = run->out_cap ? run->out_cap * 2 : READ_SIZE;
                while (cap - run->r.out_len < READ_SIZE) cap *= 2;
                char *grown = realloc(run->r.out, cap);
                if (!grown) return -ENOMEM;
                run->r.out = grown;
                run->out_cap = cap;
            }
            into = run->r.out + run->r.out_len;
        }
        ssize_t n = read(fd, into, READ_SIZE);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 1;
            return -errno;
        }
        if (n == 0) return 0;
        if (kind == K_OUT) {
            run->r.out_len += (uint64_t)n;
            if (run->r.out_len > run->max_output) {
                run->r.overflow = 1; /* the caller kills the group */
                return 0;
            }
        } else {
            keep_tail(&run->r, chunk, (size_t)n);
        }
        if (n < READ_SIZE) return !(events & (EPOLLHUP | EPOLLERR));
    }
    return 1;
}

static void on_event(struct sl_run *run, int kind, uint32_t events) {
    if (run->over || run->fds[kind] < 0) return; /* reported in a batch that finished it */
    if (kind == K_PIDFD) {
        run->exited = 1;
    } else if (kind == K_STDIN) {
        int err = write_stdin(run);
        if (err) {
            fail(run, err);
            return;
        }
    } else {
        int more = read_pipe(run, kind, events);
        if (more < 0) {
            fail(run, -more);
            return;
        }
        if (more) {
            int err = arm(run, kind, EPOLLIN);
            if (err) {
                fail(run, err);
                return;
            }
        } else {
            close_fd(run, kind);
            if (run->r.overflow) {
                run->stop = STOP_KILL;
                on_stop(run);
                return;
            }
        }
    }
    advance(run);
}

static void start(struct sl_run *run) {
    int child[3] = {-1, -1, -1}, pipe_fds[2], err = 0;
    posix_spawn_file_actions_t actions;
    char *argv[2] = {run->path, NULL};
    pid_t pid;
    /* Both ends non-blocking and close-on-exec in one call; the child's made blocking. */
    if (pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) < 0) goto failed;
    child[0] = pipe_fds[0];
    run->fds[K_STDIN] = pipe_fds[1];
    if (pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) < 0) goto failed;
    run->fds[K_OUT] = pipe_fds[0];
    child[1] = pipe_fds[1];
    if (pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) < 0) goto failed;
    run->fds[K_ERR] = pipe_fds[0];
    child[2] = pipe_fds[1];
    for (int i = 0; i < 3; i++) /* plugins expect blocking pipes */
        if (fcntl(child[i], F_SETFL, fcntl(child[i], F_GETFL) & ~O_NONBLOCK) < 0) goto failed;
    if ((err = write_stdin(run)) != 0) goto failed_err;
    if ((err = arm(run, K_OUT, EPOLLIN)) != 0 || (err = arm(run, K_ERR, EPOLLIN)) != 0)
        goto failed_err;
    if ((err = posix_spawn_file_actions_init(&actions)) != 0) goto failed_err;
    for (int i = 0; i < 3 && !err; i++)
        err = posix_spawn_file_actions_adddup2(&actions, child[i], i);
    /* Last: its dup2 may replace a pipe end the child had at 3. */
    if (!err && run->held >= 0) err = posix_spawn_file_actions_adddup2(&actions, run->held, 3);
    if (!err) err = posix_spawn(&pid, run->path, &actions, &attr, argv, run->envp);
    posix_spawn_file_actions_destroy(&actions);
    /* The child's ends are closed before anything else: a finished run leaves nothing open. */
    for (int i = 0; i < 3; i++) close(child[i]);
    child[0] = child[1] = child[2] = -1;
    if (err) goto failed_err;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        if (errno == ESRCH) { /* exited and reaped by someone else already (SIGCHLD ignored) */
            run->exited = 1;
            advance(run);
            return;
        }
        err = errno;
        kill_and_reap(pid);
        goto failed_err;
    }
    run->r.pid = pid;
    run->fds[K_PIDFD] = pidfd;
    if ((err = arm(run, K_PIDFD, EPOLLIN)) != 0) {
        fail(run, err);
        return;
    }
    advance(run);
    return;
failed:
    err = errno;
failed_err:
    for (int i = 0; i < 3; i++)
        if (child[i] >= 0) close(child[i]);
    run->r.error = err;
    finish(run);
}

/* Stops asked for since the last look (the loop thread raises stop_req under the lock). */
static void take_stops(void) {
    struct sl_run *run = running;
    while (run) {
        struct sl_run *next = run->next;
        int wanted = __atomic_load_n(&run->stop_req, __ATOMIC_ACQUIRE);
        if (wanted > run->stop) {
            run->stop = wanted;
            on_stop(run);
        }
        run = next;
    }
}

/* Start the queued runs, taking one at a time: each run left in the queue can still be
 * withdrawn while the ones before it are spawned. */
static void take_queue(void) {
    for (;;) {
        pthread_mutex_lock(&lock);
        struct sl_run *run = queue_head;
        if (run) {
            queue_head = run->next;
            if (!queue_head) queue_tail = NULL;
            run->r.state = RUNNING;
        }
        pthread_mutex_unlock(&lock);
        if (!run) return;
        run->prev = NULL;
        run->next = running;
        if (running) running->prev = run;
        running = run;
        start(run);
        int wanted = __atomic_load_n(&run->stop_req, __ATOMIC_ACQUIRE);
        if (!run->over && wanted > run->stop) {
            run->stop = wanted;
            on_stop(run);
        }
    }
}

static int next_timeout(void) {
    double first = 0;
    for (struct sl_run *run = running; run; run = run->next)
        if (run->deadline && (!first || run->deadline < first)) first = run->deadline;
    if (!first) return -1;
    double left = first - now_s();
    if (left > 86400) return 86400 * 1000; /* a grace of days (or inf): look again daily */
    return left <= 0 ? 0 : (int)(left * 1000) + 1; /* rounded up: never wake too early */
}

static void *serve(void *unused) {
    (void)unused;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep_fd, events, MAX_EVENTS, next_timeout());
        int woken = 0;
        for (int i = 0; i < n; i++) {
            uint64_t data = events[i].data.u64;
            int kind = (int)(data & K_MASK);
            if (kind == K_WAKE) {
                woken = 1;
                continue;
            }
            struct sl_run *run = (struct sl_run *)(uintptr_t)(data & ~(uint64_t)K_MASK);
            on_event(run, kind, events[i].events);
        }
        if (woken) {
            /* After the batch's other events, so that no descriptor closed while handling
             * them is confused with a new run's. */
            eventfd_t count;
            eventfd_read(wake_fd, &count);
            take_stops();
            take_queue();
        }
        double now = now_s();
        for (struct sl_run *run = running, *next; run; run = next) {
            next = run->next;
            if (run->deadline && run->deadline <= now) {
                run->deadline = 0;
                advance(run);
            }
        }
        release_finished();
    }
    return NULL;
}

/* The wake eventfd and the epoll instance: 0, or -errno (then neither is left open). */
static int make_loop(void) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = K_WAKE};
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (wake_fd >= 0 && ep_fd >= 0 && epoll_ctl(ep_fd, EPOLL_CTL_ADD, wake_fd, &ev) == 0) return 0;
    int err = errno;
    if (wake_fd >= 0) close(wake_fd);
    if (ep_fd >= 0) close(ep_fd);
    wake_fd = ep_fd = -1;
    return -err;
}

/* A forked child has no spawner thread and must not share the parent's epoll instance: it
 * closes its copies, and makes its own and starts its thread on first use. What the parent had queued or
 * running stays the parent's. */
static void forget_after_fork(void) {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER; /* the parent's may have been held */
    lock = fresh;
    queue_head = queue_tail = running = released = NULL;
    started = 0;
    if (wake_fd >= 0) close(wake_fd);
    if (ep_fd >= 0) close(ep_fd);
    wake_fd = ep_fd = -1; /* made by the child's first sl_submit, if it ever runs a plugin */
}

/* ---- the loop thread's calls ---------------------------------------------------------- */

const char *sl_source_hash(void) { return SL_SOURCE_HASH; }

/* At load: the wake eventfd, the epoll instance, the spawn attributes. Once per process: a
 * second load of the library (the same one, to dlopen) finds them made. */
int sl_init(void) {
    static int done;
    sigset_t empty, defaults;
    if (done) return 0;
    int err = posix_spawnattr_init(&attr);
    if (err) return -err;
    sigemptyset(&empty);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE); /* Python ignores them; plugins must not */
    sigaddset(&defaults, SIGXFSZ);
    if ((err = posix_spawnattr_setsigmask(&attr, &empty)) != 0 ||
        (err = posix_spawnattr_setsigdefault(&attr, &defaults)) != 0 ||
        (err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                                   POSIX_SPAWN_SETSIGDEF)) != 0)
        return -err;
    if ((err = make_loop()) != 0) return err;
    if ((err = pthread_atfork(NULL, NULL, forget_after_fork)) != 0) {
        close(wake_fd);
        close(ep_fd);
        wake_fd = ep_fd = -1;
        return -err;
    }
    done = 1;
    return 0;
}

/* A run of path with the environment env_block (env_count "KEY=VALUE" strings, each ended
 * by a NUL byte) and stdin; everything is copied. NULL when out of memory. */
struct sl_run *sl_new(const char *path, const char *env_block, size_t env_len, size_t env_count,
                      const char *stdin_data, size_t stdin_len, int held, int done,
                      size_t max_output, double kill_grace, double pipe_grace) {
    struct sl_run *run = calloc(1, sizeof *run);
    if (!run) return NULL;
    run->path = strdup(path);
    run->env_block = malloc(env_len ? env_len : 1);
    run->envp = calloc(env_count + 1, sizeof(char *));
    run->stdin_data = malloc(stdin_len ? stdin_len : 1);
    run->r.err = malloc(STDERR_TAIL);
    if (!run->path || !run->env_block || !run->envp || !run->stdin_data || !run->r.err) {
        free_run(run);
        return NULL;
    }
    memcpy(run->env_block, env_block, env_len);
    char *entry = run->env_block;
    for (size_t i = 0; i < env_count; i++) {
        run->envp[i] = entry;
        entry += strlen(entry) + 1;
    }
    memcpy(run->stdin_data, stdin_data, stdin_len);
    run->stdin_len = stdin_len;
    run->held = held;
    run->done = done;
    run->max_output = max_output;
    run->kill_grace = kill_grace;
    run->pipe_grace = pipe_grace;
    for (int kind = 0; kind < K_COUNT; kind++) run->fds[kind] = -1;
    run->r.state = QUEUED;
    return run;
}

/* Queue the run for the spawner thread, starting the thread on first use: 0, or -errno
 * (the thread could not be started; the run is not queued). */
int sl_submit(struct sl_run *run) {
    int err = 0;
    pthread_mutex_lock(&lock);
    if (ep_fd < 0) err = -make_loop(); /* in a forked child, at its first run */
    if (!err && !started) {
        pthread_t thread;
        pthread_attr_t thread_attr;
        sigset_t all, before;
        sigfillset(&all);
        /* Born with every signal blocked: they are the Python main thread's to handle. */
        pthread_sigmask(SIG_BLOCK, &all, &before);
        pthread_attr_init(&thread_attr);
        pthread_attr_setdetachstate(&thread_attr, PTHREAD_CREATE_DETACHED);
        err = pthread_create(&thread, &thread_attr, serve, NULL);
        pthread_attr_destroy(&thread_attr);
        pthread_sigmask(SIG_SETMASK, &before, NULL);
        if (!err) {
            pthread_setname_np(thread, "cni_async-spawn");
            started = 1;
        }
    }
    if (!err) {
        run->next = NULL;
        if (queue_tail) queue_tail->next = run;
        else queue_head = run;
        queue_tail = run;
    }
    pthread_mutex_unlock(&lock);
    if (err) return -err;
    eventfd_write(wake_fd, 1);
    return 0;
}

/* Withdraw the run if the thread has not taken it; return its state after (WITHDRAWN: it
 * never starts, and is the caller's to free). */
int sl_withdraw(struct sl_run *run) {
    int state;
    pthread_mutex_lock(&lock);
    if (run->r.state == QUEUED) {
        struct sl_run **link = &queue_head, *before = NULL;
        while (*link && *link != run) {
            before = *link;
            link = &(*link)->next;
        }
        if (*link) {
            *link = run->next;
            if (queue_tail == run) queue_tail = before;
        }
        run->r.state = WITHDRAWN;
    }
    state = run->r.state;
    pthread_mutex_unlock(&lock);
    return state;
}

/* Ask the thread to stop the plugin: SIGTERM and the group's grace, or (now) SIGKILL to the
 * group at once. A run already over is left as it is. */
void sl_stop(struct sl_run *run, int now) {
    int wanted = now ? STOP_KILL : STOP_TERM;
    pthread_mutex_lock(&lock);
    if (run->r.state != FINISHED && run->r.state != WITHDRAWN && wanted > run->stop_req)
        __atomic_store_n(&run->stop_req, wanted, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&lock);
    eventfd_write(wake_fd, 1);
}

/* Leave "done" and the run to the thread, which closes and frees them when the run is over;
 * at once if it is over already. */
void sl_abandon(struct sl_run *run) {
    int over;
    pthread_mutex_lock(&lock);
    over = run->r.state == FINISHED || run->r.state == WITHDRAWN;
    if (!over) run->abandoned = 1;
    pthread_mutex_unlock(&lock);
    if (over) {
        close(run->done);
        free_run(run);
    }
}

/* Free a run that is over (its result read) or withdrawn. */
void sl_free(struct sl_run *run) { free_run(run); }
