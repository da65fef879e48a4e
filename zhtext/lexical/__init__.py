"""The lexical layer: characters, lexicons, the trie, n-gram counting, word discovery, segmentation.

Numpy and Numba only, never torch: ``zhtext discover`` and ``zhtext segment`` start fast.
"""
