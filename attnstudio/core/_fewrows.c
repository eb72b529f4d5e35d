/* A few rows times a weight matrix, the weights read once, on every core: out (m, N) = x (m, K) @ w (K, N).
 *
 * Why: typing one character into a causal model computes one or two new rows per layer, and each is a product
 * with every weight matrix, so the whole model streams from memory once per key press (SmolLM2: 405 MiB of
 * float32 weights in its 30 layers). That stream is the cost. OpenBLAS's matrix-matrix product packs the
 * weights first for two rows (three times a matrix-vector product's time); its matrix-vector product runs on
 * one core unless BLAS's own threads are on, and those spin-wait, which on a busy machine cost seconds.
 * Here the weight rows are cut into CHUNKS contiguous pieces; the calling thread and (threads - 1) helper
 * threads claim pieces until none is left, each piece applied to all m input rows while it streams through, so
 * m rows cost about what one does and two cores read the memory together. A helper that is slow to start (a
 * busy machine) only means the caller claims more pieces itself: nobody waits for a thread that has no piece;
 * where the caller keeps waiting for helpers descheduled mid-piece (a busy machine), it works alone for a while
 * (see BUSY_WAIT_SHARE).
 *
 * Exactness: each piece sums its weight rows in order into its own float32 partial (m, N) (one row at a time,
 * or four at a time for one input row of a large matrix); the caller adds the partials in piece order. The
 * order of the sums is the same whoever computed which piece and however many threads ran: the result is
 * deterministic. It differs from BLAS's order by float32 rounding only (tested against float64: within 1e-6 of
 * the sum of |x| |w|). A matrix of fewer than SMALL_WEIGHTS weights is one piece summed row by row, the order of
 * BLAS's own products, so a small model's prefix-cache rows match its full forward pass to ~1e-7.
 *
 * rows_matmul(x, w, out, threads): C-contiguous float32 buffers (the buffer protocol: NumPy arrays, no NumPy
 * headers), x (m, K), w (K, N), out (m, N), 1 <= m <= MAX_ROWS; out is overwritten; threads >= 1 cores to use.
 * The Python thread state is released while it runs. With GCC or Clang on x86-64 the piece kernel is built
 * twice (AVX2 + FMA, and the x86-64 baseline) and the module picks, when it loads, the one the CPU runs. Without
 * POSIX threads (MSVC) it runs on the calling thread alone.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32) && (defined(__unix__) || defined(__APPLE__))
#define FEWROWS_THREADS 1
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#else
#define FEWROWS_THREADS 0
#endif

#define MAX_ROWS 8        /* more rows: BLAS's packed product is as fast (attnstudio.core.backend.project) */
#define CHUNKS 8          /* pieces of the weight rows per product: shared out between the threads */
#define SMALL_WEIGHTS 65536 /* fewer weights: one piece on the calling thread (too short to share) */
#define MAX_HELPERS 15    /* helper threads at most (16 cores) */
#define SPIN_NS 100000L   /* a helper polls this long after its last piece before it sleeps: the next product
                             of the same forward pass mostly comes within it, a wake-up from sleep can cost tens
                             of microseconds in a virtual machine; longer polls take a busy machine's CPU */

#if defined(__GNUC__) && defined(__x86_64__)
#define AVX2_BUILD 1 /* the kernel is also built for AVX2 + FMA, and chosen where the CPU has both */
#else
#define AVX2_BUILD 0
#endif

/* partial (m, N) = x[:, k0:k1] @ w[k0:k1, :]: weight row k is read once and applied to every input row. */
static inline __attribute__((always_inline)) void piece_kernel_body(const float *restrict x, const float *restrict w,
                                                                    float *restrict partial, Py_ssize_t m,
                                                                    Py_ssize_t K, Py_ssize_t N, Py_ssize_t k0,
                                                                    Py_ssize_t k1, int grouped)
{
    memset(partial, 0, (size_t)m * (size_t)N * sizeof(float));
    Py_ssize_t k = k0;
    if (m == 1 && grouped) {
        /* four weight rows per pass over the partial: a quarter of its loads and stores, one core's memory
           stream runs ~25% faster */
        for (; k + 4 <= k1; k += 4) {
            const float a0 = x[k], a1 = x[k + 1], a2 = x[k + 2], a3 = x[k + 3];
            const float *restrict r0 = w + k * N, *restrict r1 = r0 + N, *restrict r2 = r1 + N, *restrict r3 = r2 + N;
            for (Py_ssize_t j = 0; j < N; j++)
                partial[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j];
        }
    }
    if (m == 1) {
        for (; k < k1; k++) {
            const float a = x[k], *restrict row = w + k * N;
            for (Py_ssize_t j = 0; j < N; j++)
                partial[j] += a * row[j];
        }
    } else if (m == 2) {
        float *restrict y0 = partial, *restrict y1 = partial + N;
        for (; k < k1; k++) {
            const float a = x[k], b = x[K + k], *restrict row = w + k * N;
            for (Py_ssize_t j = 0; j < N; j++) {
                const float v = row[j];
                y0[j] += a * v;
                y1[j] += b * v;
            }
        }
    } else {
        for (; k < k1; k++) {
            const float *restrict row = w + k * N;
            for (Py_ssize_t r = 0; r < m; r++) {
                const float a = x[r * K + k];
                float *restrict y = partial + r * N;
                for (Py_ssize_t j = 0; j < N; j++)
                    y[j] += a * row[j];
            }
        }
    }
}

static void piece_kernel_baseline(const float *restrict x, const float *restrict w, float *restrict partial,
                                  Py_ssize_t m, Py_ssize_t K, Py_ssize_t N, Py_ssize_t k0, Py_ssize_t k1,
                                  int grouped)
{
    piece_kernel_body(x, w, partial, m, K, N, k0, k1, grouped);
}

#if AVX2_BUILD
__attribute__((target("avx2,fma"))) static void piece_kernel_avx2(const float *restrict x, const float *restrict w,
                                                                   float *restrict partial, Py_ssize_t m,
                                                                   Py_ssize_t K, Py_ssize_t N, Py_ssize_t k0,
                                                                   Py_ssize_t k1, int grouped)
{
    piece_kernel_body(x, w, partial, m, K, N, k0, k1, grouped);
}
#endif

typedef void (*PieceKernel)(const float *, const float *, float *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                            Py_ssize_t, int);
static PieceKernel piece_kernel = piece_kernel_baseline; /* set once when the module loads */

typedef struct {
    const float *x, *w;
    float *partials; /* (pieces, m, N) */
    Py_ssize_t m, K, N, pieces;
} Product;

static void run_piece(const Product *p, Py_ssize_t piece)
{
    Py_ssize_t k0 = p->K * piece / p->pieces, k1 = p->K * (piece + 1) / p->pieces;
    piece_kernel(p->x, p->w, p->partials + piece * p->m * p->N, p->m, p->K, p->N, k0, k1, p->pieces > 1);
}

static void run_alone(const Product *p)
{
    for (Py_ssize_t piece = 0; piece < p->pieces; piece++)
        run_piece(p, piece);
}

#if FEWROWS_THREADS
/* One product at a time is shared (the pool's lock is held by its caller from start to end). */
static struct {
    pthread_mutex_t lock;     /* guards generation, open, joined and the helpers' sleep */
    pthread_cond_t wake;      /* a new product, for sleeping helpers */
    pthread_cond_t left;      /* a helper left the product */
    pthread_mutex_t call;     /* one caller at a time */
    atomic_long generation;   /* bumped for every product */
    int open;                 /* helpers may still join the current product */
    atomic_int joined;        /* helpers working on the current product (changed under lock) */
    atomic_long next;         /* the next piece to claim */
    Product product;
    int helpers;              /* helper threads started */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, {0}, 0};

static long elapsed_ns(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000000000L + (now.tv_nsec - since->tv_nsec);
}

static void claim_pieces(void)
{
    for (;;) {
        long piece = atomic_fetch_add(&pool.next, 1);
        if (piece >= pool.product.pieces)
            return;
        run_piece(&pool.product, piece);
    }
}

static void *helper_main(void *unused)
{
    (void)unused;
    long seen = 0;
    for (;;) {
        /* poll for a new product for SPIN_NS, then sleep until one comes */
        struct timespec since;
        clock_gettime(CLOCK_MONOTONIC, &since);
        while (atomic_load(&pool.generation) == seen && elapsed_ns(&since) < SPIN_NS)
            ;
        pthread_mutex_lock(&pool.lock);
        while (atomic_load(&pool.generation) == seen)
            pthread_cond_wait(&pool.wake, &pool.lock);
        seen = atomic_load(&pool.generation);
        int joining = pool.open;
        pool.joined += joining;
        pthread_mutex_unlock(&pool.lock);
        if (!joining)
            continue; /* woke after the caller had finished the product alone */
        claim_pieces();
        pthread_mutex_lock(&pool.lock);
        if (--pool.joined == 0)
            pthread_cond_signal(&pool.left);
        pthread_mutex_unlock(&pool.lock);
    }
    return NULL;
}

/* A child process of fork() has none of the helpers (nor can it trust the locks' state): start afresh. */
static void after_fork_in_child(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_mutex_init(&pool.call, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.left, NULL);
    atomic_store(&pool.joined, 0);
    pool.open = 0;
    pool.helpers = 0;
}

/* Start helpers up to (threads - 1); returns how many run. */
static int ensure_helpers(int threads)
{
    int wanted = threads - 1 < MAX_HELPERS ? threads - 1 : MAX_HELPERS;
    while (pool.helpers < wanted) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attributes, helper_main, NULL);
        pthread_attr_destroy(&attributes);
        if (failed)
            break; /* fewer helpers: the caller claims their pieces */
        pool.helpers++;
    }
    return pool.helpers < wanted ? pool.helpers : wanted;
}

/* Contention: on a busy machine a helper is often descheduled in the middle of a piece, and the caller waits for
 * it where the piece takes tens of microseconds. The caller measures the share of each shared product it spent
 * waiting for helpers; when that share's running average passes BUSY_WAIT_SHARE it runs the next BUSY_BACKOFF
 * products alone (one core: about BLAS's matrix-vector time), then tries the helpers again. */
#define BUSY_WAIT_SHARE 0.2
#define BUSY_BACKOFF 1024
static struct {
    long long products, alone_until, backoffs; /* under pool.call */
    double wait_share;
} busy = {0, 0, 0, 0.0};

static void shared_product(const Product *product, int threads)
{
    pthread_mutex_lock(&pool.call);
    busy.products++;
    if (threads < 2 || busy.products < busy.alone_until || ensure_helpers(threads) == 0) {
        run_alone(product);
        pthread_mutex_unlock(&pool.call);
        return;
    }
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    pthread_mutex_lock(&pool.lock);
    pool.product = *product;
    atomic_store(&pool.next, 0);
    pool.open = 1;
    atomic_fetch_add(&pool.generation, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    claim_pieces();
    pthread_mutex_lock(&pool.lock);
    pool.open = 0; /* every piece is claimed: helpers that wake now leave at once */
    pthread_mutex_unlock(&pool.lock);
    struct timespec since;
    clock_gettime(CLOCK_MONOTONIC, &since);
    while (atomic_load(&pool.joined) > 0 && elapsed_ns(&since) < SPIN_NS)
        ; /* a helper is finishing its last piece: a fraction of the product's time */
    pthread_mutex_lock(&pool.lock);
    while (atomic_load(&pool.joined) > 0)
        pthread_cond_wait(&pool.left, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    double waited = (double)elapsed_ns(&since), total = (double)elapsed_ns(&started);
    busy.wait_share = 0.8 * busy.wait_share + 0.2 * (total > 0 ? waited / total : 0.0);
    if (busy.wait_share > BUSY_WAIT_SHARE) {
        busy.alone_until = busy.products + BUSY_BACKOFF;
        busy.backoffs++;
        busy.wait_share = 0.0;
    }
    pthread_mutex_unlock(&pool.call);
}

static PyObject *contention(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    pthread_mutex_lock(&pool.call);
    PyObject *answer = Py_BuildValue("{s:L,s:L,s:O}", "products", busy.products, "backoffs", busy.backoffs, "alone",
                                     busy.products < busy.alone_until ? Py_True : Py_False);
    pthread_mutex_unlock(&pool.call);
    return answer;
}
#else
static void shared_product(const Product *product, int threads)
{
    (void)threads;
    run_alone(product);
}

static PyObject *contention(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return Py_BuildValue("{s:i,s:i,s:O}", "products", 0, "backoffs", 0, "alone", Py_True);
}
#endif

/* A C-contiguous 2-D float32 buffer of ``obj``, or -1 with a TypeError naming ``what``. */
static int get_matrix(PyObject *obj, Py_buffer *view, int writable, const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->ndim != 2 || view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
        PyErr_Format(PyExc_TypeError, "rows_matmul: %s must be a C-contiguous 2-D float32 array", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *rows_matmul(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *x_obj, *w_obj, *out_obj;
    int threads;
    Py_buffer x, w, out;
    if (!PyArg_ParseTuple(args, "OOOi:rows_matmul", &x_obj, &w_obj, &out_obj, &threads))
        return NULL;
    if (get_matrix(x_obj, &x, 0, "x") < 0)
        return NULL;
    if (get_matrix(w_obj, &w, 0, "w") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (get_matrix(out_obj, &out, 1, "out") < 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&w);
        return NULL;
    }
    Py_ssize_t m = x.shape[0], K = x.shape[1], N = w.shape[1];
    PyObject *result = NULL;
    float *partials = NULL;
    if (w.shape[0] != K || out.shape[0] != m || out.shape[1] != N) {
        PyErr_Format(PyExc_ValueError, "rows_matmul: (%zd, %zd) @ (%zd, %zd) -> (%zd, %zd): the shapes do not fit",
                     m, K, w.shape[0], N, out.shape[0], out.shape[1]);
    } else if (m < 1 || m > MAX_ROWS || K < 1) {
        PyErr_Format(PyExc_ValueError, "rows_matmul: %zd rows of %zd: 1 to %d rows of at least one value", m, K,
                     MAX_ROWS);
    } else if (threads < 1) {
        PyErr_SetString(PyExc_ValueError, "rows_matmul: threads must be at least 1");
    } else {
        Py_ssize_t pieces = K * N < SMALL_WEIGHTS ? 1 : CHUNKS;
        partials = malloc((size_t)pieces * (size_t)m * (size_t)N * sizeof(float));
        if (partials == NULL) {
            PyErr_NoMemory();
        } else {
            Product product = {(const float *)x.buf, (const float *)w.buf, partials, m, K, N, pieces};
            float *y = (float *)out.buf;
            Py_BEGIN_ALLOW_THREADS
            shared_product(&product, threads);
            memcpy(y, partials, (size_t)m * (size_t)N * sizeof(float));
            for (Py_ssize_t piece = 1; piece < pieces; piece++) { /* in piece order: the same sums every time */
                const float *part = partials + piece * m * N;
                for (Py_ssize_t i = 0; i < m * N; i++)
                    y[i] += part[i];
            }
            Py_END_ALLOW_THREADS
            result = Py_NewRef(Py_None);
        }
    }
    free(partials);
    PyBuffer_Release(&x);
    PyBuffer_Release(&w);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"rows_matmul", rows_matmul, METH_VARARGS,
     "rows_matmul(x, w, out, threads): out (m, N) = x (m, K) @ w (K, N), float32, C-contiguous, 1 <= m <= 8; "
     "the weights are read once, shared between `threads` cores."},
    {"contention", contention, METH_NOARGS,
     "contention() -> {'products': shared or not, 'backoffs': times the helpers were set aside because the "
     "caller waited for them too long (a busy machine), 'alone': whether products run on one core now}"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fewrows", "A few rows times a weight matrix, the weights read once, on every core.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fewrows(void)
{
    PyObject *created = PyModule_Create(&module);
    if (created == NULL)
        return NULL;
    const char *kernel = "baseline";
#if AVX2_BUILD
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        piece_kernel = piece_kernel_avx2;
        kernel = "avx2+fma";
    }
#endif
#if FEWROWS_THREADS
    static int fork_handler_set = 0;
    if (!fork_handler_set && pthread_atfork(NULL, NULL, after_fork_in_child) == 0)
        fork_handler_set = 1;
#endif
    if (PyModule_AddIntConstant(created, "MAX_ROWS", MAX_ROWS) < 0 ||
        PyModule_AddStringConstant(created, "KERNEL", kernel) < 0 ||
        PyModule_AddIntConstant(created, "THREADED", FEWROWS_THREADS) < 0) {
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
