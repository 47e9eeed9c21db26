%% dft_go: a BEAM twin of some of the Go functions the rpc tests call.
-module(dft_go).
-export([add/3]).

add(A, B, C) -> A + B + C.
