%% A reference model of libring's HashRing.key_to_nodes/3 (ours; run by
%% replicas_test.go).
%%
%% It restates, in Erlang and on the same gb_trees calls, what lib/ring.ex of
%% bitwalker/libring does (see ring/libring/replicas.go): the ring is built
%% as add_node/2 builds it (weight 128, the node added first keeps a shared
%% point), and key_to_nodes(Ring, Key, Count):
%%   - hashes Key with phash2 as it is (atoms included),
%%   - clamps Count to the number of nodes,
%%   - when iterator_from(Hash) has an entry, takes its node and walks on with
%%     gb_trees:next, skipping nodes already taken, until Count are taken
%%     (then answers them in the order found) or the tree ends (then answers
%%     the accumulator as it is: the last found first),
%%   - otherwise answers the node of gb_trees:smallest alone.
%%
%% main([In, Out]): In is term_to_binary([{NodeNames, Keys, Counts}]),
%% NodeNames a list of binaries (added in that order, as atoms), Keys a list
%% of terms, Counts a list of integers. For each case, for each key, for each
%% count, Out gets a line "R Node1 Node2 ..." (the nodes by name).
-module(libring_replicas_ref).
-export([main/1]).

-define(HASH_RANGE, 4294967295). % trunc(:math.pow(2, 32) - 1)
-define(WEIGHT, 128).

main([In, Out]) ->
    try
        {ok, Bin} = file:read_file(In),
        Cases = binary_to_term(Bin),
        ok = file:write_file(Out, [run(Names, Keys, Counts) || {Names, Keys, Counts} <- Cases]),
        halt(0)
    catch Class:Reason:Stack ->
        io:format(standard_error, "libring_replicas_ref: ~p:~p ~p~n", [Class, Reason, Stack]),
        halt(2)
    end.

run(Names, Keys, Counts) ->
    Nodes = [binary_to_atom(N, utf8) || N <- Names],
    Ring = lists:foldl(fun add_node/2, gb_trees:empty(), Nodes),
    [line(key_to_nodes(Ring, length(Nodes), K, C)) || K <- Keys, C <- Counts].

line(Nodes) ->
    [<<"R">>, [[$\s, atom_to_binary(N, utf8)] || N <- Nodes], $\n].

add_node(Node, Ring) ->
    lists:foldl(
      fun(I, R) ->
              P = erlang:phash2({Node, I}, ?HASH_RANGE),
              try gb_trees:insert(P, Node, R)
              catch error:{key_exists, _} -> R
              end
      end, Ring, lists:seq(1, ?WEIGHT)).

key_to_nodes(Ring, NodeCount, Key, Count0) ->
    Hash = erlang:phash2(Key, ?HASH_RANGE),
    Count = min(NodeCount, Count0),
    case gb_trees:iterator_from(Hash, Ring) of
        [{_, Node, _, _} | _] = Iter ->
            walk(Iter, Count - 1, [Node]);
        _ ->
            {_, Node} = gb_trees:smallest(Ring),
            [Node]
    end.

walk(_Iter, 0, Acc) ->
    lists:reverse(Acc);
walk(Iter, Count, Acc) ->
    case gb_trees:next(Iter) of
        {_, Node, Next} ->
            case lists:member(Node, Acc) of
                true -> walk(Next, Count, Acc);
                false -> walk(Next, Count - 1, [Node | Acc])
            end;
        none ->
            Acc
    end.
