"""The pooling cases, the same windows for AVERAGE_POOL_2D and MAX_POOL_2D."""
from tests.ops._harness import Case


def pool(kind, shape, k, s, pad):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        layer = keras.layers.AveragePooling2D if kind == "avg" else keras.layers.MaxPooling2D
        return keras.Model(x, layer(k, strides=s, padding=pad)(x))
    return build


def pool_cases(kind: str) -> list[Case]:
    """`kind` "avg" or "max": windows valid / same, odd sizes, global, non-square, larger than the image."""
    return [
        Case(f"{kind}_k2s2_valid", pool(kind, (8, 8, 3), 2, 2, "valid"), (8, 8, 3)),
        Case(f"{kind}_k3s1_same", pool(kind, (7, 6, 4), 3, 1, "same"), (7, 6, 4)),
        Case(f"{kind}_k3s2_same_odd", pool(kind, (9, 7, 2), 3, 2, "same"), (9, 7, 2)),
        Case(f"{kind}_global", pool(kind, (5, 5, 6), 5, 1, "valid"), (5, 5, 6)),
        Case(f"{kind}_k2x3", pool(kind, (6, 9, 2), (2, 3), (2, 3), "valid"), (6, 9, 2)),
        Case(f"{kind}_k5_on_3x3_same", pool(kind, (3, 3, 4), 5, 1, "same"), (3, 3, 4)),
        Case(f"{kind}_k2s1_same_even", pool(kind, (4, 5, 3), 2, 1, "same"), (4, 5, 3)),
    ]
