"""Named lists of preferred contractions, tried first by the greedy selection (BasisRequest.prefer).

HIPHOP_L3_N4: the 13 invariants of the HIP-HOP-NN layer (l ≤ 3, n ≤ 4), in its column order, written in our
index notation; cartinv verifies they are independent and complete (rank 13 = bound), so a Basis derived with
this preference reproduces that layer's columns one for one.
"""

HIPHOP_L3_N4 = (
    "T0",
    "T1[a] T1[a]",
    "T2[ab] T2[ab]",
    "T2[ab] T2[bc] T2[ca]",
    "T3[abc] T3[abc]",
    "T3[abc] T3[abd] T3[efc] T3[efd]",
    "T1[a] T2[ab] T1[b]",
    "T1[a] T2[ab] T2[bc] T1[c]",
    "T3[abc] T1[a] T1[b] T1[c]",
    "T1[a] T3[acd] T3[bcd] T1[b]",
    "T3[acd] T3[bcd] T2[ab]",
    "T3[acd] T3[bcd] T2[ae] T2[be]",
    "T3[abc] T2[ab] T3[dec] T2[de]",
)

PRESETS = {"hiphop": HIPHOP_L3_N4}
