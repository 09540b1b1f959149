# Loading the store's ready feed into a ReadyHeap (nothing to cimport).
