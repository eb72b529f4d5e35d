/* Exact maximum flow on an integer residual network: Dinic's algorithm (Dinic 1970; Even's presentation).
 *
 * attnstudio.core.flow builds the network once per attention flow, as arcs grouped by tail node:
 *   offsets   (nodes + 1,)  int64   arcs of node v are offsets[v] .. offsets[v + 1] - 1
 *   heads     (arcs,)       int64   the node each arc enters
 *   reverse   (arcs,)       int64   the index of each arc's partner (an edge's forward and backward arc)
 *   capacity  (arcs,)       int64   initial residual capacity: an edge's capacity forward, 0 backward
 * and calls max_flow(offsets, heads, reverse, capacity, source, sink) once per (output, input) pair. The inputs
 * are never written: each call works on its own copy of the capacities. Integer arithmetic throughout, so the
 * value is the exact maximum flow of the integer network, the same integer any exact algorithm finds
 * (scipy.sparse.csgraph.maximum_flow's Dinic included). int64 cannot overflow: an arc's residual capacity plus
 * its partner's stays the sum of their initial capacities, and the flow value is at most the sum of all
 * capacities, which is checked to fit in int64.
 *
 * Each phase: a breadth-first search labels nodes by their distance from the source in the residual network,
 * then a depth-first search along arcs that go exactly one level down (each node's current arc, never
 * revisited within the phase) finds augmenting paths until none is left (a blocking flow). At most `nodes`
 * phases; the sink's distance grows strictly with each one. The Python thread state is released while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Py_ssize_t nodes, arcs;
    const int64_t *offsets, *heads, *reverse;
    int64_t *residual;                    /* (arcs,) this call's copy of the capacities */
    int64_t *level, *queue, *current, *path; /* (nodes,) each */
} Network;

/* Label every node with its distance from the source over arcs with residual capacity, stopping at the sink's
 * distance (nodes farther away cannot be on a shortest path). Returns 1 when the sink is reachable. */
static int label_levels(Network *g, int64_t source, int64_t sink)
{
    Py_ssize_t first = 0, last = 0;
    for (Py_ssize_t v = 0; v < g->nodes; v++)
        g->level[v] = -1;
    g->level[source] = 0;
    g->queue[last++] = source;
    while (first < last) {
        int64_t v = g->queue[first++];
        if (g->level[sink] >= 0 && g->level[v] >= g->level[sink])
            break;
        for (int64_t a = g->offsets[v]; a < g->offsets[v + 1]; a++) {
            int64_t u = g->heads[a];
            if (g->residual[a] > 0 && g->level[u] < 0) {
                g->level[u] = g->level[v] + 1;
                g->queue[last++] = u;
            }
        }
    }
    return g->level[sink] >= 0;
}

/* Augment along shortest paths until none is left in this phase's level graph; returns the flow added. */
static int64_t blocking_flow(Network *g, int64_t source, int64_t sink)
{
    int64_t added = 0, v = source;
    Py_ssize_t depth = 0; /* path[0 .. depth - 1]: the arcs from the source to v */
    for (Py_ssize_t w = 0; w < g->nodes; w++)
        g->current[w] = g->offsets[w];
    for (;;) {
        if (v == sink) {
            int64_t bottleneck = INT64_MAX;
            for (Py_ssize_t i = 0; i < depth; i++)
                if (g->residual[g->path[i]] < bottleneck)
                    bottleneck = g->residual[g->path[i]];
            for (Py_ssize_t i = 0; i < depth; i++) {
                g->residual[g->path[i]] -= bottleneck;
                g->residual[g->reverse[g->path[i]]] += bottleneck;
            }
            added += bottleneck;
            /* resume from the tail of the first arc the augmentation saturated */
            Py_ssize_t keep = 0;
            while (g->residual[g->path[keep]] > 0)
                keep++;
            depth = keep;
            v = depth == 0 ? source : g->heads[g->path[depth - 1]];
            continue;
        }
        int64_t end = g->offsets[v + 1], a = g->current[v];
        int64_t next_level = g->level[v] + 1;
        while (a < end && !(g->residual[a] > 0 && g->level[g->heads[a]] == next_level &&
                            (next_level < g->level[sink] || g->heads[a] == sink)))
            a++;
        g->current[v] = a;
        if (a < end) { /* advance */
            g->path[depth++] = a;
            v = g->heads[a];
        } else { /* v is a dead end for the rest of the phase: retreat */
            g->level[v] = -1;
            if (depth == 0)
                return added;
            v = g->heads[g->reverse[g->path[--depth]]];
            g->current[v]++;
        }
    }
}

static int get_int64_vector(PyObject *object, Py_buffer *view, const char *name)
{
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *format = view->format ? view->format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@')
        format++;
    if (view->ndim != 1 || view->itemsize != 8 || (strcmp(format, "q") != 0 && strcmp(format, "l") != 0)) {
        PyErr_Format(PyExc_TypeError, "max_flow: %s must be a 1-d contiguous int64 array", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The network's arrays must describe a residual network whose capacities sum to at most INT64_MAX: checked
 * once per call, in O(arcs), so a bad array raises ValueError instead of reading out of bounds or overflowing. */
static int check_network(const Network *g, const int64_t *capacity)
{
    if (g->offsets[0] != 0 || g->offsets[g->nodes] != g->arcs)
        return 0;
    for (Py_ssize_t v = 0; v < g->nodes; v++)
        if (g->offsets[v] > g->offsets[v + 1])
            return 0;
    int64_t total = 0;
    for (Py_ssize_t a = 0; a < g->arcs; a++) {
        int64_t partner = g->reverse[a];
        if (g->heads[a] < 0 || g->heads[a] >= g->nodes || partner < 0 || partner >= g->arcs ||
            g->reverse[partner] != a || capacity[a] < 0 || capacity[a] > INT64_MAX - total)
            return 0;
        total += capacity[a];
    }
    return 1;
}

static PyObject *max_flow(PyObject *self, PyObject *args)
{
    PyObject *objects[4];
    long long source, sink;
    Py_buffer views[4];
    const char *names[4] = {"offsets", "heads", "reverse", "capacity"};
    int held = 0;
    PyObject *result = NULL;
    Network g = {0};
    (void)self;

    if (!PyArg_ParseTuple(args, "OOOOLL:max_flow", &objects[0], &objects[1], &objects[2], &objects[3], &source,
                          &sink))
        return NULL;
    for (; held < 4; held++)
        if (get_int64_vector(objects[held], &views[held], names[held]) < 0)
            goto done;
    g.nodes = views[0].shape[0] - 1;
    g.arcs = views[1].shape[0];
    g.offsets = views[0].buf;
    g.heads = views[1].buf;
    g.reverse = views[2].buf;
    if (g.nodes < 1 || views[2].shape[0] != g.arcs || views[3].shape[0] != g.arcs ||
        !check_network(&g, views[3].buf)) {
        PyErr_SetString(PyExc_ValueError, "max_flow: the arrays do not describe a residual network");
        goto done;
    }
    if (source < 0 || source >= g.nodes || sink < 0 || sink >= g.nodes || source == sink) {
        PyErr_SetString(PyExc_ValueError, "max_flow: source and sink must be two different nodes");
        goto done;
    }
    g.residual = malloc(sizeof(int64_t) * (size_t)(g.arcs > 0 ? g.arcs : 1));
    g.level = malloc(sizeof(int64_t) * 4 * (size_t)g.nodes);
    if (g.residual == NULL || g.level == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    g.queue = g.level + g.nodes;
    g.current = g.queue + g.nodes;
    g.path = g.current + g.nodes;
    memcpy(g.residual, views[3].buf, sizeof(int64_t) * (size_t)g.arcs);
    int64_t total = 0;
    Py_BEGIN_ALLOW_THREADS
    while (label_levels(&g, source, sink))
        total += blocking_flow(&g, source, sink);
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong(total);
done:
    free(g.residual);
    free(g.level);
    while (held > 0)
        PyBuffer_Release(&views[--held]);
    return result;
}

static PyMethodDef methods[] = {
    {"max_flow", max_flow, METH_VARARGS,
     "max_flow(offsets, heads, reverse, capacity, source, sink) -> int\n\n"
     "The exact maximum flow from source to sink of an integer residual network (Dinic's algorithm).\n"
     "offsets (nodes + 1,), heads, reverse and capacity (arcs,): 1-d int64 arrays, arcs grouped by tail node;\n"
     "reverse[a] is the partner arc of a, capacity[a] its initial residual capacity. The arrays are not written."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "attnstudio.core._maxflow",
    .m_doc = "Exact integer maximum flow (Dinic's algorithm) for attnstudio.core.flow.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__maxflow(void)
{
    return PyModule_Create(&module);
}
