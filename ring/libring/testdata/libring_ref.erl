%% A reference model of libring's HashRing (ours; run by libring_test.go).
%%
%% It restates, in Erlang, what lib/ring.ex of bitwalker/libring does (see
%% the package doc of ring/libring): add_node/2 with the default weight 128
%% and key_to_node/2.
%%
%% main([In, Out]): In is term_to_binary([{NodeNames, Keys}]), NodeNames a
%% list of binaries (added in that order, as atoms), Keys a list of terms.
%% For each case, Out gets a line "P Hash Node" for every point of the ring
%% in order, then "K Node" for every key.
-module(libring_ref).
-export([main/1]).

-define(HASH_RANGE, 4294967295). % trunc(:math.pow(2, 32) - 1)
-define(WEIGHT, 128).

main([In, Out]) ->
    try
        {ok, Bin} = file:read_file(In),
        Cases = binary_to_term(Bin),
        ok = file:write_file(Out, [run(Names, Keys) || {Names, Keys} <- Cases]),
        halt(0)
    catch Class:Reason:Stack ->
        io:format(standard_error, "libring_ref: ~p:~p ~p~n", [Class, Reason, Stack]),
        halt(2)
    end.

run(Names, Keys) ->
    Ring = lists:foldl(fun add_node/2, gb_trees:empty(),
                       [binary_to_atom(N, utf8) || N <- Names]),
    [[io_lib:format("P ~b ", [P]), atom_to_binary(N, utf8), $\n] || {P, N} <- gb_trees:to_list(Ring)]
    ++ [[<<"K ">>, atom_to_binary(key_to_node(Ring, K), utf8), $\n] || K <- Keys].

add_node(Node, Ring) ->
    lists:foldl(
      fun(I, R) ->
              P = erlang:phash2({Node, I}, ?HASH_RANGE),
              try gb_trees:insert(P, Node, R)
              catch error:{key_exists, _} -> R % the node added first keeps the point
              end
      end, Ring, lists:seq(1, ?WEIGHT)).

key_to_node(Ring, Key) when is_atom(Key) ->
    key_to_node(Ring, term_to_binary(Key));
key_to_node(Ring, Key) ->
    Hash = erlang:phash2(Key, ?HASH_RANGE),
    case gb_trees:iterator_from(Hash, Ring) of
        [{_, Node, _, _} | _] -> Node;
        _ -> {_, Node} = gb_trees:smallest(Ring), Node
    end.
