"""The label layer: tagging schemes (BIO, BIOES, BMES), tagged-data formats, the Numba Viterbi and
forward-backward. Numpy and Numba only, never torch."""
