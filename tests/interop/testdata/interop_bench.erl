%% interop_bench: helpers the interop tests and benchmarks evaluate on erl
%% nodes: timed loops measured inside the node (no test-harness round trip
%% in the numbers) and a pong collector.
-module(interop_bench).
-export([multi_call_loop/4, multi_call_par/5, rpc_loop/5, pong_nodes/2, start_void/0, send_watch/4]).

%% multi_call_loop(Nodes, Name, Req, N): N gen_server:multi_call/4 to
%% Nodes, each checked to have one reply per node and no bad node.
%% Returns {ok, NanosPerCall} or {bad, Replies, BadNodes}.
multi_call_loop(Nodes, Name, Req, N) ->
    Want = length(Nodes),
    T0 = erlang:monotonic_time(nanosecond),
    case mc(Nodes, Name, Req, Want, N) of
        ok -> {ok, (erlang:monotonic_time(nanosecond) - T0) div max(N, 1)};
        Bad -> Bad
    end.

mc(_, _, _, _, 0) -> ok;
mc(Nodes, Name, Req, Want, N) ->
    case gen_server:multi_call(Nodes, Name, Req, 5000) of
        {Replies, []} when length(Replies) =:= Want -> mc(Nodes, Name, Req, Want, N - 1);
        {Replies, BadNodes} -> {bad, Replies, BadNodes}
    end.

%% multi_call_par(Nodes, Name, Req, Procs, N): N gen_server:multi_call/4
%% to Nodes in all, from Procs processes at once, each taking the next call
%% from a shared counter (as the Go side's goroutines do). Returns
%% {ok, NanosPerCall} (wall time over N) or the first {bad, ...}.
multi_call_par(Nodes, Name, Req, Procs, N) ->
    Want = length(Nodes),
    Left = atomics:new(1, [{signed, true}]),
    atomics:put(Left, 1, N),
    T0 = erlang:monotonic_time(nanosecond),
    Ms = [spawn_monitor(fun() -> exit(mcp(Nodes, Name, Req, Want, Left)) end)
          || _ <- lists:seq(1, Procs)],
    Rs = [receive {'DOWN', M, process, P, R} -> R end || {P, M} <- Ms],
    T = erlang:monotonic_time(nanosecond) - T0,
    case [R || R <- Rs, R =/= ok] of
        [] -> {ok, T div max(N, 1)};
        [Bad | _] -> Bad
    end.

mcp(Nodes, Name, Req, Want, Left) ->
    case atomics:sub_get(Left, 1, 1) >= 0 of
        false -> ok;
        true ->
            case gen_server:multi_call(Nodes, Name, Req, 5000) of
                {Replies, []} when length(Replies) =:= Want -> mcp(Nodes, Name, Req, Want, Left);
                {Replies, BadNodes} -> {bad, Replies, BadNodes}
            end
    end.

%% rpc_loop(Node, M, F, A, N): N rpc:call/5 with the same answer each time.
%% Returns {ok, NanosPerCall, Answer} or {bad, Answer1, Answer2}.
rpc_loop(Node, M, F, A, N) ->
    First = rpc:call(Node, M, F, A, 5000),
    T0 = erlang:monotonic_time(nanosecond),
    case rl(Node, M, F, A, First, N) of
        ok -> {ok, (erlang:monotonic_time(nanosecond) - T0) div max(N, 1), First};
        Bad -> Bad
    end.

rl(_, _, _, _, _, 0) -> ok;
rl(Node, M, F, A, Want, N) ->
    case rpc:call(Node, M, F, A, 5000) of
        Want -> rl(Node, M, F, A, Want, N - 1);
        Other -> {bad, Want, Other}
    end.

%% pong_nodes(N, Timeout): the nodes of the next N {pong, Pid} messages to
%% this process, sorted, then `extra` if one more message came within 200 ms.
pong_nodes(N, Timeout) -> pong_nodes(N, Timeout, []).

pong_nodes(0, _, Acc) ->
    Nodes = lists:sort(Acc),
    receive M -> {Nodes, {extra, M}} after 200 -> Nodes end;
pong_nodes(N, Timeout, Acc) ->
    receive
        {pong, P} when is_pid(P) -> pong_nodes(N - 1, Timeout, [node(P) | Acc])
    after Timeout -> {timeout, lists:sort(Acc)}
    end.

%% start_void/0: only the Void server (registered 'Void'), for nodes that
%% are not cluster members (benchmark targets).
start_void() ->
    {ok, _} = gen_server:start({local, 'Void'}, cloister_member, void, []),
    ok.

%% send_watch({Name, Node}, Msg, DownWait, UpWait): send Msg and watch the
%% link to Node: {dropped, DownMicros, UpMicros | no_nodeup} when it went
%% down within DownWait ms (and came back within UpWait ms), else kept.
send_watch({_, Node} = Dest, Msg, DownWait, UpWait) ->
    ok = net_kernel:monitor_nodes(true),
    T0 = erlang:monotonic_time(microsecond),
    Dest ! Msg,
    R = receive
            {nodedown, Node} ->
                T1 = erlang:monotonic_time(microsecond) - T0,
                receive
                    {nodeup, Node} -> {dropped, T1, erlang:monotonic_time(microsecond) - T0}
                after UpWait -> {dropped, T1, no_nodeup}
                end
        after DownWait -> kept
        end,
    ok = net_kernel:monitor_nodes(false),
    R.
