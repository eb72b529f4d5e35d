/* Exact maximum flow on an integer residual network: Dinic's algorithm (Dinic 1970; Even's presentation).
 *
 * attnstudio.core.flow builds the network once per attention flow, as arcs grouped by tail node:
 *   offsets   (nodes + 1,)  int64   arcs of node v are offsets[v] .. offsets[v + 1] - 1
 *   heads     (arcs,)       int64   the node each arc enters
 *   reverse   (arcs,)       int64   the index of each arc's partner (an edge's forward and backward arc)
 *   capacity  (arcs,)       int64   initial residual capacity: an edge's capacity forward, 0 backward
 * as Network(offsets, heads, reverse, capacity), which checks the arrays once and keeps its own copy, then calls
 * network.max_flow(source, sink) once per (output, input) pair; each call works on a fresh copy of the capacities
 * (so calls are independent, and may run in several threads at once). Integer arithmetic throughout, so the
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
#include <structmember.h>
#include <stddef.h>
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
        PyErr_Format(PyExc_TypeError, "Network: %s must be a 1-d contiguous int64 array", name);
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

typedef struct {
    PyObject_HEAD
    Py_ssize_t nodes, arcs;
    int64_t *arrays; /* one block: offsets (nodes + 1), heads, reverse, capacity (arcs each) */
} NetworkObject;

static int Network_init(NetworkObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"offsets", "heads", "reverse", "capacity", NULL};
    PyObject *objects[4];
    Py_buffer views[4];
    int held = 0, status = -1;
    Network g = {0};

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO:Network", keywords, &objects[0], &objects[1],
                                     &objects[2], &objects[3]))
        return -1;
    if (self->arrays != NULL) { /* a solve in another thread may be reading them */
        PyErr_SetString(PyExc_TypeError, "Network: already initialised");
        return -1;
    }
    for (; held < 4; held++)
        if (get_int64_vector(objects[held], &views[held], keywords[held]) < 0)
            goto done;
    g.nodes = views[0].shape[0] - 1;
    g.arcs = views[1].shape[0];
    g.offsets = views[0].buf;
    g.heads = views[1].buf;
    g.reverse = views[2].buf;
    if (g.nodes < 1 || views[2].shape[0] != g.arcs || views[3].shape[0] != g.arcs ||
        !check_network(&g, views[3].buf)) {
        PyErr_SetString(PyExc_ValueError, "Network: the arrays do not describe a residual network");
        goto done;
    }
    int64_t *arrays = malloc(sizeof(int64_t) * ((size_t)g.nodes + 1 + 3 * (size_t)g.arcs));
    if (arrays == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(arrays, views[0].buf, sizeof(int64_t) * ((size_t)g.nodes + 1));
    for (int i = 1; i < 4; i++)
        memcpy(arrays + g.nodes + 1 + (size_t)(i - 1) * g.arcs, views[i].buf, sizeof(int64_t) * (size_t)g.arcs);
    self->arrays = arrays;
    self->nodes = g.nodes;
    self->arcs = g.arcs;
    status = 0;
done:
    while (held > 0)
        PyBuffer_Release(&views[--held]);
    return status;
}

static void Network_dealloc(NetworkObject *self)
{
    free(self->arrays);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Network_max_flow(NetworkObject *self, PyObject *args)
{
    long long source, sink;
    if (!PyArg_ParseTuple(args, "LL:max_flow", &source, &sink))
        return NULL;
    if (self->arrays == NULL) {
        PyErr_SetString(PyExc_ValueError, "max_flow: the network was never initialised");
        return NULL;
    }
    if (source < 0 || source >= self->nodes || sink < 0 || sink >= self->nodes || source == sink) {
        PyErr_SetString(PyExc_ValueError, "max_flow: source and sink must be two different nodes");
        return NULL;
    }
    Network g = {.nodes = self->nodes, .arcs = self->arcs, .offsets = self->arrays};
    g.heads = g.offsets + g.nodes + 1;
    g.reverse = g.heads + g.arcs;
    const int64_t *capacity = g.reverse + g.arcs;
    g.residual = malloc(sizeof(int64_t) * (size_t)(g.arcs > 0 ? g.arcs : 1));
    g.level = malloc(sizeof(int64_t) * 4 * (size_t)g.nodes);
    if (g.residual == NULL || g.level == NULL) {
        free(g.residual);
        free(g.level);
        return PyErr_NoMemory();
    }
    g.queue = g.level + g.nodes;
    g.current = g.queue + g.nodes;
    g.path = g.current + g.nodes;
    int64_t total = 0;
    Py_BEGIN_ALLOW_THREADS
    memcpy(g.residual, capacity, sizeof(int64_t) * (size_t)g.arcs);
    while (label_levels(&g, source, sink))
        total += blocking_flow(&g, source, sink);
    Py_END_ALLOW_THREADS
    free(g.residual);
    free(g.level);
    return PyLong_FromLongLong(total);
}

static PyMethodDef Network_methods[] = {
    {"max_flow", (PyCFunction)Network_max_flow, METH_VARARGS,
     "max_flow(source, sink) -> int\n\nThe exact maximum flow from node source to node sink (Dinic's algorithm)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Network_members[] = {
    {"nodes", T_PYSSIZET, offsetof(NetworkObject, nodes), READONLY, "number of nodes"},
    {"arcs", T_PYSSIZET, offsetof(NetworkObject, arcs), READONLY, "number of arcs (twice the edges)"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject NetworkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "attnstudio.core._maxflow.Network",
    .tp_doc = "Network(offsets, heads, reverse, capacity): an integer residual network, checked and copied.\n\n"
              "offsets (nodes + 1,), heads, reverse and capacity (arcs,): 1-d int64 arrays, arcs grouped by tail\n"
              "node; reverse[a] is the partner arc of a, capacity[a] its initial residual capacity (an edge's\n"
              "capacity forward, 0 backward). ValueError unless they describe a residual network whose\n"
              "capacities sum to at most 2**63 - 1.",
    .tp_basicsize = sizeof(NetworkObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Network_init,
    .tp_dealloc = (destructor)Network_dealloc,
    .tp_methods = Network_methods,
    .tp_members = Network_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "attnstudio.core._maxflow",
    .m_doc = "Exact integer maximum flow (Dinic's algorithm) for attnstudio.core.flow.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__maxflow(void)
{
    if (PyType_Ready(&NetworkType) < 0)
        return NULL;
    PyObject *module_object = PyModule_Create(&module);
    if (module_object == NULL)
        return NULL;
    Py_INCREF(&NetworkType);
    if (PyModule_AddObject(module_object, "Network", (PyObject *)&NetworkType) < 0) {
        Py_DECREF(&NetworkType);
        Py_DECREF(module_object);
        return NULL;
    }
    return module_object;
}
