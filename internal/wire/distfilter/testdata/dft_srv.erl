%% dft_srv: the Erlang twin of the Go test server "go_echo" (same name on
%% every node, same answers), plus helpers the distfilter tests evaluate.
-module(dft_srv).
-behaviour(gen_server).
-export([start/0, init/1, handle_call/3, handle_cast/2, handle_info/2]).
-export([linked_exit/2, unlink_then_exit/2, collect/2, monitor_exit/2]).

%% start/0 registers the server as go_echo, like the Go one.
start() ->
    {ok, Pid} = gen_server:start({local, go_echo}, ?MODULE, [], []),
    Pid.

init([]) -> {ok, []}.

handle_call({echo, X}, _From, S) -> {reply, {reply, X, node()}, S};
handle_call({sleep, Ms}, _From, S) -> timer:sleep(Ms), {reply, slept, S};
handle_call({stop, Reason}, _From, S) -> {stop, Reason, S};
handle_call(_Other, _From, S) -> {reply, ok, S}.

handle_cast({store, K, V}, S) -> erltest_ctl:set(K, V), {noreply, S};
handle_cast(_, S) -> {noreply, S}.

handle_info(_, S) -> {noreply, S}.

%% linked_exit(Node, Reason): link to a fresh Go process on Node that exits
%% with Reason when told; return what this (trapping) process receives.
linked_exit(GoPid, Reason) ->
    process_flag(trap_exit, true),
    link(GoPid),
    GoPid ! {exit, Reason},
    receive {'EXIT', GoPid, R} -> {exit, R} after 5000 -> timeout end.

%% unlink_then_exit(GoPid, Reason): link, unlink, then make the Go process
%% exit: an unlinked process must not get the exit signal.
unlink_then_exit(GoPid, Reason) ->
    process_flag(trap_exit, true),
    link(GoPid),
    true = unlink(GoPid),
    GoPid ! {exit, Reason},
    receive {'EXIT', GoPid, R} -> {still_linked, R} after 500 -> unlinked end.

%% collect(N, Timeout): the next N messages to this process, in order.
collect(0, _) -> [];
collect(N, T) -> receive M -> [M | collect(N - 1, T)] after T -> [timeout] end.

%% monitor_exit(GoPid, Reason): monitor a Go process that then exits with
%% Reason; the 'DOWN' reason (OTP 26+: the monitor reference is long).
monitor_exit(GoPid, Reason) ->
    Ref = monitor(process, GoPid),
    GoPid ! {exit, Reason},
    receive {'DOWN', Ref, process, GoPid, R} -> {down, R} after 5000 -> timeout end.
