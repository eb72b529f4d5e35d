"""Make Qt's SVG output draw the same in every renderer (librsvg, browsers, Inkscape, Qt itself).

Qt writes each painter state as a ``<g transform="matrix(...)">`` around shapes in the painter's local
coordinates. Two habits of that output only work in some renderers:

* cosmetic pens (pyqtgraph's default: one screen pixel wide whatever the zoom) become
  ``vector-effect="non-scaling-stroke"``. librsvg ignores it and scales the stroke by the group's
  transform: a 1 px outline of a bar in data units (x67, y-115) becomes a huge black polygon. We move
  such shapes out of the transform (their coordinates multiplied through), where 1 is 1 px everywhere.
* images are embedded at their own size (a 16x16 heatmap is 16x16 pixels) and stretched by the transform;
  renderers smooth that stretch, so crisp cells turn into blurry blobs whatever ``image-rendering`` says.
  We enlarge such images by whole pixels (nearest neighbour) until one image pixel is finer than a
  third of a screen pixel, so smoothing has nothing left to blur.
"""
from __future__ import annotations

import base64
import math
import re
from xml.etree import ElementTree

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
IMAGE_OVERSAMPLING = 3  # image pixels per screen pixel after enlarging
MAX_IMAGE_SIDE = 4096   # never enlarge an embedded image beyond this many pixels a side
_MATRIX = re.compile(r"^\s*matrix\(([^)]*)\)\s*$")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATH_TOKEN = re.compile(rf"[A-Za-z]|{_NUMBER}")
_PNG_DATA = "data:image/png;base64,"
_XML_INVALID = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # raw control bytes, and the same as references:
                          rb"|&#(?:x0*(?:[0-8bcef]|1[0-9a-fA-F])|0*(?:[0-8]|1[124-9]|2[0-9]|3[01]));")

ElementTree.register_namespace("", SVG_NS)
ElementTree.register_namespace("xlink", XLINK_NS)

Matrix = tuple[float, float, float, float, float, float]  # SVG's (a, b, c, d, e, f): x' = a x + c y + e


def make_portable(svg: bytes) -> bytes:
    """Qt's SVG bytes -> the same drawing without non-scaling strokes under transforms or stretched images."""
    try:
        root = ElementTree.fromstring(_XML_INVALID.sub(b"", svg))
    except ElementTree.ParseError:
        return svg  # not XML we understand: leave Qt's drawing as Qt wrote it
    for parent in list(root.iter()):
        children = list(parent)
        if not any(child.tag == f"{{{SVG_NS}}}g" for child in children):
            continue
        rebuilt = []
        for child in children:
            rebuilt.extend(_split_group(child) if child.tag == f"{{{SVG_NS}}}g" else [child])
        if [id(child) for child in rebuilt] != [id(child) for child in children]:
            for child in children:
                parent.remove(child)
            parent.extend(rebuilt)
    for group in root.iter(f"{{{SVG_NS}}}g"):
        matrix = _matrix(group.get("transform"))
        for image in group.findall(f"{{{SVG_NS}}}image"):
            _sharpen(image, matrix or (1.0, 0.0, 0.0, 1.0, 0.0, 0.0))
    text = ElementTree.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + text + "\n").encode("utf-8")


def _matrix(transform: str | None) -> Matrix | None:
    match = _MATRIX.match(transform or "")
    if not match:
        return None
    values = [float(v) for v in re.split(r"[\s,]+", match.group(1).strip())]
    return tuple(values) if len(values) == 6 else None  # type: ignore[return-value]


def _split_group(group: ElementTree.Element) -> list[ElementTree.Element]:
    """The group as runs: shapes with non-scaling strokes baked into an untransformed copy, the rest as is."""
    matrix = _matrix(group.get("transform"))
    if group.get("transform") is None or (matrix is not None and matrix[:4] == (1.0, 0.0, 0.0, 1.0)):
        for child in group:  # a translation does not scale strokes: the hint can go as it is
            child.attrib.pop("vector-effect", None)
        return [group]
    if matrix is None:
        return [group]
    if any(group.get(key, "").startswith("url(") for key in ("fill", "stroke")):
        return [group]  # a gradient or pattern lives in the group's coordinates: keep them
    runs: list[tuple[bool, list[ElementTree.Element]]] = []
    for child in list(group):
        baked = child.get("vector-effect") == "non-scaling-stroke" and _bake(child, matrix)
        if baked:
            del child.attrib["vector-effect"]
        if runs and runs[-1][0] == baked:
            runs[-1][1].append(child)
        else:
            runs.append((baked, [child]))
    if not any(baked for baked, _ in runs):
        return [group]
    groups = []
    for baked, members in runs:
        copy = ElementTree.Element(group.tag, dict(group.attrib))
        copy.text, copy.tail = group.text, group.tail
        if baked:
            del copy.attrib["transform"]
        copy.extend(members)
        groups.append(copy)
    return groups


def _apply(matrix: Matrix, x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f = matrix
    return a * x + c * y + e, b * x + d * y + f


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _pairs(values: list[float], matrix: Matrix) -> list[float]:
    out = []
    for i in range(0, len(values) - 1, 2):
        out.extend(_apply(matrix, values[i], values[i + 1]))
    return out


def _bake(element: ElementTree.Element, matrix: Matrix) -> bool:
    """Rewrite ``element``'s coordinates through ``matrix`` in place; False (untouched) if it cannot be."""
    tag = element.tag.rsplit("}", 1)[-1]
    axis_aligned = matrix[1] == 0 and matrix[2] == 0
    if tag in ("polyline", "polygon"):
        values = [float(v) for v in re.findall(_NUMBER, element.get("points", ""))]
        if len(values) % 2:
            return False
        moved = _pairs(values, matrix)
        element.set("points", " ".join(f"{_fmt(moved[i])},{_fmt(moved[i + 1])}" for i in range(0, len(moved), 2)))
    elif tag == "path":
        d = _bake_path(element.get("d", ""), matrix)
        if d is None:
            return False
        element.set("d", d)
    elif tag == "line":
        x1, y1 = _apply(matrix, float(element.get("x1", 0)), float(element.get("y1", 0)))
        x2, y2 = _apply(matrix, float(element.get("x2", 0)), float(element.get("y2", 0)))
        for key, value in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2)):
            element.set(key, _fmt(value))
    elif tag == "rect" and not element.get("rx") and not element.get("ry"):
        x, y = float(element.get("x", 0)), float(element.get("y", 0))
        w, h = float(element.get("width", 0)), float(element.get("height", 0))
        corners = [_apply(matrix, px, py) for px, py in ((x, y), (x + w, y), (x + w, y + h), (x, y + h))]
        if axis_aligned:
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]
            for key, value in (("x", min(xs)), ("y", min(ys)), ("width", max(xs) - min(xs)),
                               ("height", max(ys) - min(ys))):
                element.set(key, _fmt(value))
        else:
            for key in ("x", "y", "width", "height"):
                element.attrib.pop(key, None)
            element.tag = f"{{{SVG_NS}}}polygon"
            element.set("points", " ".join(f"{_fmt(px)},{_fmt(py)}" for px, py in corners))
    elif tag in ("ellipse", "circle") and axis_aligned:
        cx, cy = _apply(matrix, float(element.get("cx", 0)), float(element.get("cy", 0)))
        radius = float(element.get("r", 0))
        rx, ry = float(element.get("rx", radius)), float(element.get("ry", radius))
        element.attrib.pop("r", None)
        element.tag = f"{{{SVG_NS}}}ellipse"
        for key, value in (("cx", cx), ("cy", cy), ("rx", abs(matrix[0]) * rx), ("ry", abs(matrix[3]) * ry)):
            element.set(key, _fmt(value))
    else:
        return False
    return True


def _bake_path(d: str, matrix: Matrix) -> str | None:
    """Absolute M/L/C/Q/S/T/Z path data through ``matrix``; None for anything else (arcs, relative moves)."""
    tokens = _PATH_TOKEN.findall(d)
    out, command, numbers = [], None, []

    def flush() -> bool:
        if command is None:
            return not numbers
        if command == "Z":
            out.append("Z")
            return not numbers
        if command not in "MLCQST" or len(numbers) % 2:
            return False
        moved = _pairs(numbers, matrix)
        out.append(command + " ".join(f"{_fmt(moved[i])},{_fmt(moved[i + 1])}" for i in range(0, len(moved), 2)))
        return True

    for token in tokens:
        if token.isalpha():
            if not flush():
                return None
            command, numbers = token, []
        else:
            numbers.append(float(token))
    return " ".join(out) if flush() else None


def enlarge(picture: QImage, x_factor: int, y_factor: int) -> QImage:
    """``picture`` with every pixel repeated ``x_factor`` x ``y_factor`` times, exactly.

    Not ``QImage.scaled(..., FastTransformation)``: its fixed-point stepping drifts with large factors (a
    16-pixel row enlarged 192 x put its 15th pixel at 14.22..15.23 pixel widths), which moved the
    heatmap's cells by up to a quarter of a cell in the SVG and the PNG made from it.
    """
    argb = picture.convertToFormat(QImage.Format_ARGB32)
    rows = np.frombuffer(argb.constBits(), np.uint8).reshape(argb.height(), argb.bytesPerLine())
    pixels = rows[:, :4 * argb.width()].reshape(argb.height(), argb.width(), 4)       # (h, w, BGRA)
    big = np.ascontiguousarray(np.repeat(np.repeat(pixels, y_factor, axis=0), x_factor, axis=1))  # (h*fy, w*fx, 4)
    out = QImage(big.data, big.shape[1], big.shape[0], 4 * big.shape[1], QImage.Format_ARGB32)
    return out.copy()  # own the pixels: ``big`` is freed on return


def _sharpen(image: ElementTree.Element, matrix: Matrix) -> None:
    """Enlarge an embedded PNG by whole pixels so that smoothing it when stretched blurs nothing visible."""
    href_key = f"{{{XLINK_NS}}}href" if f"{{{XLINK_NS}}}href" in image.attrib else "href"
    href = image.get(href_key, "")
    if not href.startswith(_PNG_DATA):
        return
    picture = QImage.fromData(QByteArray(base64.b64decode(href[len(_PNG_DATA):])), "PNG")
    if picture.isNull():
        return
    a, b, c, d, _, _ = matrix
    shown_width = math.hypot(a, b) * float(image.get("width", picture.width()))
    shown_height = math.hypot(c, d) * float(image.get("height", picture.height()))
    factors = []
    for shown, pixels in ((shown_width, picture.width()), (shown_height, picture.height())):
        wanted = math.ceil(IMAGE_OVERSAMPLING * shown / pixels)
        factors.append(max(1, min(wanted, MAX_IMAGE_SIDE // pixels)))
    if factors == [1, 1]:
        return
    enlarged = enlarge(picture, *factors)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.WriteOnly)
    enlarged.save(buffer, "PNG")
    buffer.close()
    image.set(href_key, _PNG_DATA + base64.b64encode(bytes(data)).decode("ascii"))
