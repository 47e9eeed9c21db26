%% cloister_member: an Erlang node that takes part in a cloister cluster the
%% way an Elixir cloister 0.16 node does, for the interop tests
%% and examples/beam. Ours: written from the documented behaviour and our own libring
%% model (ring/libring/testdata/libring_ref.erl), no Elixir code.
%%
%% start(App, Sentries, Opts) starts, unlinked, the original's tree:
%% 'Elixir.Cloister.Manager', a rest_for_one supervisor (3 restarts in 5 s,
%% Elixir's default) with, in this order, the Monitor, 'Elixir.Cloister'
%% (an empty supervisor), 'Elixir.Cloister.Node' and the Void (an
%% "additional module"). Cloister.Node is as inert as the original's: a
%% call or a cast crashes it (the message of Elixir's default handle_call),
%% and rest_for_one restarts it and the Void; node_starts/0 counts its
%% starts. The original's multiapply(M, F, A) is rpc:multicall(Nodes, M, F,
%% A), the same as multiapply/4 here.
%%
%%  * the Monitor, registered as 'Elixir.Cloister.Monitor'. It answers
%%    gen_server:call(_, state) (multi_call too) with exactly the
%%    original's three keys:
%%    #{fsm => <<"monitor_", App/binary>>, ring => AppAtom,
%%      groups => [{ring, Members}, {cluster, [node() | nodes()]}]};
%%    state/0 adds the model's own view (state => ready | rehashing,
%%    consensus => N).
%%    Members are this node plus every connected node whose Monitor answers
%%    `state` with the same fsm (Go cloister nodes and other members alike),
%%    probed on nodeup and every tick with a plain '$gen_call' whose answer
%%    arrives as a message, so a silent peer never blocks the Monitor. A
%%    plain node (nothing registered) never answers and never is a member.
%%    It dials its sentries and every node its members report (full mesh,
%%    as Go nodes do), and drops a member on nodedown or after `silence` ms
%%    without an answer.
%%  * owners the libring way (HashRing's add_node/2 with weight 128 and
%%    key_to_node/2): 128 points per member at phash2({Node, I}, 2^32-1),
%%    members added in sorted order (what cloister's MapSet gives), a key at
%%    phash2(Key, 2^32-1) (an atom key as its term_to_binary), the first
%%    point >= the hash, wrapping. owner/1, owners/1, and
%%    gen_server:call(Monitor, {whois, Group, Key}) -> {ok, Node}, Key taken
%%    as a binary as a Go node takes it.
%%  * replica sets the libring way (HashRing's key_to_nodes/3, as the Go
%%    libring engine computes it): replicas_in/4, and check_whois_n/3, which
%%    asks a Go node's Monitor {whois_n, <<>>, Key, Count} and compares.
%%  * a Void server registered as 'Void', the original suite's: a call or
%%    cast {ping, From} sends {pong, self()} to From; a call replies ok.
-module(cloister_member).
-behaviour(gen_server).

-export([start/2, start/3, stop/0, state/0, members/0, owner/1, owners/1]).
-export([key/1, keys/1, owner_indices/1, check_whois/3, ring_of/1, owner_in/2]).
-export([replicas_in/4, check_whois_n/3]).
-export([start_monitor/3, start_void/0, start_node/0, start_empty_sup/0, node_starts/0]).
-export([multiapply/4, echo/1, raise/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(MONITOR, 'Elixir.Cloister.Monitor').
-define(VOID, 'Void').
-define(NODE, 'Elixir.Cloister.Node').
-define(MANAGER, 'Elixir.Cloister.Manager').
-define(HASH_RANGE, 4294967295). % libring's trunc(:math.pow(2, 32) - 1)
-define(WEIGHT, 128).

-record(st, {app :: binary(),
             consensus :: pos_integer(),
             sentries :: [node()],
             tick :: pos_integer(),
             lazy = false :: boolean(),
             silence :: pos_integer(),
             members = #{} :: #{node() => integer()},     % member => last answer (ms)
             reported = #{} :: #{node() => [node()]},     % member => its ring members
             probes = #{} :: #{reference() => {node(), integer()}},
             dialing = #{} :: #{node() => pid()},
             ring :: {[node()], gb_trees:tree()}}).

%% start(App, Sentries) is start(App, Sentries, #{}).
start(App, Sentries) -> start(App, Sentries, #{}).

%% start(App, Sentries, Opts): App a binary, atom or string; Sentries node
%% atoms; Opts: consensus (1), tick ms (250), silence ms (5000), lazy
%% (false; true: members are probed on the tick only, not on nodeup or when
%% a peer asks, as the original assembles on its 5 s tick). Returns
%% {ok, MonitorPid}.
start(App, Sentries, Opts) ->
    {ok, Sup} = supervisor:start_link({local, ?MANAGER}, ?MODULE, {manager, to_bin(App), Sentries, Opts}),
    unlink(Sup),
    {ok, whereis(?MONITOR)}.

%% Children of the Manager.
start_monitor(App, Sentries, Opts) ->
    gen_server:start_link({local, ?MONITOR}, ?MODULE, {App, Sentries, Opts}, []).
start_void() -> gen_server:start_link({local, ?VOID}, ?MODULE, void, []).
start_node() -> gen_server:start_link({local, ?NODE}, ?MODULE, inert, []).
start_empty_sup() -> supervisor:start_link({local, 'Elixir.Cloister'}, ?MODULE, empty).

%% node_starts/0: how often Cloister.Node was started (1 when never crashed).
node_starts() ->
    case ets:whereis(?MODULE) of
        undefined -> 0;
        _ -> ets:lookup_element(?MODULE, node_starts, 2)
    end.

stop() ->
    case whereis(?MANAGER) of
        undefined -> ok;
        Sup -> exit(Sup, shutdown), ok
    end.

%% multiapply(Nodes, M, F, A): what the original's Cloister.multiapply does.
multiapply(Nodes, M, F, A) -> rpc:multicall(Nodes, M, F, A).

%% echo/1 and raise/2: BEAM functions a Go Multiapply runs.
echo(X) -> {echoed, node(), X}.
raise(Class, Reason) -> erlang:Class(Reason).

%% state/0: the Monitor's answer plus the model's own view.
state() -> gen_server:call(?MONITOR, status).

%% members/0: the ring members, sorted.
members() -> gen_server:call(?MONITOR, members).

owner(Key) -> hd(owners([Key])).

owners(Keys) -> gen_server:call(?MONITOR, {owners, Keys}, 60000).

%% key/1, keys/1: the test keys, the same as the Go tests generate (three
%% kinds of binary: ASCII, raw bytes, UTF-8).
key(I) ->
    case I rem 3 of
        0 -> <<"key:", (integer_to_binary(I))/binary>>;
        1 -> <<I:32>>;
        2 -> <<"ключ-"/utf8, (integer_to_binary(I))/binary, "-中"/utf8>>
    end.

keys(N) -> [key(I) || I <- lists:seq(0, N - 1)].

%% owner_indices(N): {Members, Indices}, Indices[I] the 0-based position in
%% Members of the owner of key(I), for I < N. Compact to print and parse.
owner_indices(N) ->
    {Members, Tree} = gen_server:call(?MONITOR, ring),
    Pos = maps:from_list(lists:zip(Members, lists:seq(0, length(Members) - 1))),
    {Members, [maps:get(owner_in(Tree, key(I)), Pos) || I <- lists:seq(0, N - 1)]}.

%% check_whois(Node, N, Workers): ask Node's Monitor {whois, <<>>, key(I)}
%% for I < N from Workers processes and compare with this node's owner.
%% Returns {Asked, Mismatches, FirstMismatches, Micros}.
check_whois(Node, N, Workers) ->
    {_, Tree} = gen_server:call(?MONITOR, ring),
    T0 = erlang:monotonic_time(microsecond),
    Self = self(),
    Chunks = chunk(lists:seq(0, N - 1), Workers),
    Pids = [spawn_link(fun() ->
                Bad = [{I, Mine, Theirs} ||
                          I <- Is,
                          Mine <- [owner_in(Tree, key(I))],
                          Theirs <- [whois(Node, key(I))],
                          Mine =/= Theirs],
                Self ! {self(), length(Is), Bad}
            end) || Is <- Chunks],
    {Asked, Bad} = lists:foldl(
        fun(P, {A, B}) -> receive {P, L, Bs} -> {A + L, Bs ++ B} end end,
        {0, []}, Pids),
    {Asked, length(Bad), lists:sublist(lists:sort(Bad), 5),
     erlang:monotonic_time(microsecond) - T0}.

%% check_whois_n(Node, Keys, Counts): ask Node's Monitor {whois_n, <<>>,
%% Key, Count} for every key and count, and compare with replicas_in/4 on
%% this node's ring. Returns {Asked, Mismatches, FirstMismatches, Short,
%% Micros}: Short counts the answers shorter than min(Count, members) that
%% matched (libring's walk that reaches the top of the ring).
check_whois_n(Node, Keys, Counts) ->
    {Members, Tree} = gen_server:call(?MONITOR, ring),
    T0 = erlang:monotonic_time(microsecond),
    Pairs = [{K, C} || K <- Keys, C <- Counts],
    Answers = [{K, C, replicas_in(Tree, length(Members), K, C),
                gen_server:call({?MONITOR, Node}, {whois_n, <<>>, K, C}, 10000)} || {K, C} <- Pairs],
    Bad = [{K, C, Mine, Theirs} || {K, C, Mine, Theirs} <- Answers, {ok, Mine} =/= Theirs],
    Short = length([x || {_, C, Mine, {ok, Mine}} <- Answers, length(Mine) < min(C, length(Members))]),
    {length(Pairs), length(Bad), lists:sublist(Bad, 5), Short,
     erlang:monotonic_time(microsecond) - T0}.

%% replicas_in(Tree, NodeCount, Key, Count): what libring's key_to_nodes/3
%% answers (read in its lib/ring.ex): Key hashed with phash2 as it is (an
%% atom too, unlike key_to_node), Count clamped to the nodes; from the first
%% point >= the hash, walk up collecting nodes not yet collected until Count
%% are (in ring order) or the tree ends (then as accumulated: the last
%% found first); a key past the last point gets the smallest point's node
%% alone. gb_trees:next/1 rather than libring's match on the iterator's
%% shape, which OTP 27 changed (see owner_in/2).
replicas_in(Tree, NodeCount, Key, Count0) ->
    Hash = erlang:phash2(Key, ?HASH_RANGE),
    Count = min(NodeCount, Count0),
    case gb_trees:next(gb_trees:iterator_from(Hash, Tree)) of
        {_, Node, Iter} -> replicas_walk(Iter, Count - 1, [Node]);
        none -> {_, Node} = gb_trees:smallest(Tree), [Node]
    end.

replicas_walk(_Iter, 0, Acc) -> lists:reverse(Acc);
replicas_walk(Iter, Count, Acc) ->
    case gb_trees:next(Iter) of
        {_, Node, Next} ->
            case lists:member(Node, Acc) of
                true -> replicas_walk(Next, Count, Acc);
                false -> replicas_walk(Next, Count - 1, [Node | Acc])
            end;
        none -> Acc
    end.

whois(Node, Key) ->
    case gen_server:call({?MONITOR, Node}, {whois, <<>>, Key}, 10000) of
        {ok, Owner} -> Owner;
        Other -> Other
    end.

chunk(L, N) ->
    Size = max(1, (length(L) + N - 1) div N),
    chunk1(L, Size).
chunk1([], _) -> [];
chunk1(L, Size) when length(L) =< Size -> [L];
chunk1(L, Size) -> {A, B} = lists:split(Size, L), [A | chunk1(B, Size)].

%% ---------------------------------------------------------------------
%% The libring ring

%% ring_of(Members): the ring of these members, added in sorted order.
ring_of(Members) ->
    Sorted = lists:usort(Members),
    {Sorted, lists:foldl(fun add_node/2, gb_trees:empty(), Sorted)}.

add_node(Node, Ring) ->
    lists:foldl(
      fun(I, R) ->
              P = erlang:phash2({Node, I}, ?HASH_RANGE),
              case gb_trees:is_defined(P, R) of
                  true -> R;                 % the node added first keeps the point
                  false -> gb_trees:insert(P, Node, R)
              end
      end, Ring, lists:seq(1, ?WEIGHT)).

owner_in(Ring, Key) when is_atom(Key) ->
    owner_in(Ring, term_to_binary(Key));
owner_in(Ring, Key) ->
    Hash = erlang:phash2(Key, ?HASH_RANGE),
    %% gb_trees:next/1, not a match on the iterator: its shape changed in
    %% OTP 27 ({ordered, Stack}), and a match on the old shape falls through
    %% to `smallest` for every key there (docs/interop.md).
    case gb_trees:next(gb_trees:iterator_from(Hash, Ring)) of
        {_, Node, _} -> Node;
        none -> {_, Node} = gb_trees:smallest(Ring), Node
    end.

%% ---------------------------------------------------------------------
%% gen_server callbacks: the Monitor (state #st{}) and the Void (void)

init({manager, App, Sentries, Opts}) ->
    ets:new(?MODULE, [named_table, public]), % owned by the Manager: outlives Node restarts
    ets:insert(?MODULE, {node_starts, 0}),
    Child = fun(Id, F, A, Type) ->
                    #{id => Id, start => {?MODULE, F, A}, type => Type}
            end,
    {ok, {#{strategy => rest_for_one, intensity => 3, period => 5},
          [Child(?MONITOR, start_monitor, [App, Sentries, Opts], worker),
           Child('Elixir.Cloister', start_empty_sup, [], supervisor),
           Child(?NODE, start_node, [], worker),
           Child(?VOID, start_void, [], worker)]}};
init(empty) ->
    {ok, {#{strategy => one_for_one}, []}};
init(inert) ->
    ets:update_counter(?MODULE, node_starts, 1),
    {ok, inert};
init(void) ->
    {ok, void};
init({App, Sentries, Opts}) ->
    ok = net_kernel:monitor_nodes(true),
    S = #st{app = App,
            consensus = maps:get(consensus, Opts, 1),
            sentries = [N || N <- Sentries, N =/= node()],
            tick = maps:get(tick, Opts, 250),
            lazy = maps:get(lazy, Opts, false),
            silence = maps:get(silence, Opts, 5000),
            ring = ring_of([node()])},
    self() ! tick,
    {ok, S}.

handle_call(_, _From, inert) ->
    %% as Elixir's default handle_call/3 of a `use GenServer` module
    erlang:error(#{'__struct__' => 'Elixir.RuntimeError', '__exception__' => true,
                   message => <<"attempted to call GenServer Cloister.Node but no handle_call/3 clause was provided">>});
handle_call({ping, From}, _From, void) when is_pid(From) ->
    From ! {pong, self()},
    {reply, ok, void};
handle_call(_, _From, void) ->
    {reply, ok, void};
handle_call(state, {Pid, _}, S) ->
    Caller = node(Pid),
    S1 = case Caller =/= node() andalso not maps:is_key(Caller, S#st.members)
             andalso not S#st.lazy of
             true -> probe(Caller, S); % a peer asking may be a member
             false -> S
         end,
    {reply, state_map(S1), S1};
handle_call(status, _From, S = #st{consensus = C, ring = {Members, _}}) ->
    {reply, maps:merge(state_map(S),
                       #{state => case length(Members) >= C of true -> ready; false -> rehashing end,
                         consensus => C}), S};
handle_call({whois, _Group, Key}, _From, S) ->
    case to_bin(Key) of
        error -> {reply, {error, badarg}, S};
        K -> {reply, {ok, owner_in(element(2, S#st.ring), K)}, S}
    end;
handle_call({owners, Keys}, _From, S = #st{ring = {_, Tree}}) ->
    {reply, [owner_in(Tree, K) || K <- Keys], S};
handle_call(members, _From, S = #st{ring = {Members, _}}) ->
    {reply, Members, S};
handle_call(ring, _From, S) ->
    {reply, S#st.ring, S};
handle_call(_, _From, S) ->
    {reply, {error, unknown_call}, S}.

handle_cast(_, inert) ->
    erlang:error(#{'__struct__' => 'Elixir.RuntimeError', '__exception__' => true,
                   message => <<"attempted to cast GenServer Cloister.Node but no handle_cast/2 clause was provided">>});
handle_cast({ping, From}, void) when is_pid(From) ->
    From ! {pong, self()},
    {noreply, void};
handle_cast(_, S) ->
    {noreply, S}.

handle_info(_, void) ->
    {noreply, void};
handle_info(tick, S) ->
    erlang:send_after(S#st.tick, self(), tick),
    Now = now_ms(),
    S1 = lists:foldl(fun probe/2, S, nodes()),
    S2 = expire(Now, S1),
    {noreply, rebuild(dial(S2))};
handle_info({nodeup, _Node}, S = #st{lazy = true}) ->
    {noreply, S}; % the original assembles on its tick only
handle_info({nodeup, Node}, S) ->
    {noreply, probe(Node, S)};
handle_info({nodedown, Node}, S) ->
    {noreply, rebuild(forget(Node, S))};
handle_info({dialed, Node, _Result}, S) ->
    {noreply, S#st{dialing = maps:remove(Node, S#st.dialing)}};
handle_info({Ref, Reply}, S) when is_reference(Ref) ->
    case maps:take(Ref, S#st.probes) of
        {{Node, _}, Probes} -> {noreply, rebuild(answer(Node, Reply, S#st{probes = Probes}))};
        error -> {noreply, S}
    end;
handle_info(_, S) ->
    {noreply, S}.

terminate(_, _) -> ok.

%% ---------------------------------------------------------------------

state_map(#st{app = App, ring = {Members, _}}) ->
    #{fsm => <<"monitor_", App/binary>>,
      ring => binary_to_atom(App, utf8),
      groups => [{ring, Members}, {cluster, [node() | nodes()]}]}.

%% probe sends `state` as a gen_server call whose reply comes back as
%% {Ref, Reply}; noconnect: a probe never dials.
probe(Node, S) ->
    Ref = make_ref(),
    _ = erlang:send({?MONITOR, Node}, {'$gen_call', {self(), Ref}, state}, [noconnect]),
    S#st{probes = maps:put(Ref, {Node, now_ms()}, S#st.probes)}.

answer(Node, Reply, S = #st{app = App}) ->
    Fsm = <<"monitor_", App/binary>>,
    FsmList = binary_to_list(Fsm),
    case Reply of
        #{fsm := F} = M when F =:= Fsm; F =:= FsmList ->
            S#st{members = maps:put(Node, now_ms(), S#st.members),
                 reported = maps:put(Node, ring_members(M), S#st.reported)};
        _ ->
            forget(Node, S) % another application's cluster, or not cloister
    end.

ring_members(#{groups := Groups}) when is_list(Groups) ->
    case lists:keyfind(ring, 1, Groups) of
        {ring, L} when is_list(L) -> [N || N <- L, is_atom(N)];
        _ -> []
    end;
ring_members(_) -> [].

forget(Node, S) ->
    S#st{members = maps:remove(Node, S#st.members),
         reported = maps:remove(Node, S#st.reported)}.

expire(Now, S = #st{silence = Silence}) ->
    Silent = [N || {N, Seen} <- maps:to_list(S#st.members), Now - Seen > Silence],
    Probes = maps:filter(fun(_, {_, At}) -> Now - At < 10000 end, S#st.probes),
    lists:foldl(fun forget/2, S#st{probes = Probes}, Silent).

%% dial connects, each in its own process, to the sentries and the nodes
%% members report that are not connected yet.
dial(S = #st{dialing = Dialing}) ->
    Reported = lists:append(maps:values(S#st.reported)),
    Connected = [node() | nodes()],
    Want = lists:usort(S#st.sentries ++ Reported) -- Connected,
    Me = self(),
    New = maps:from_list(
            [{N, spawn(fun() -> Me ! {dialed, N, net_kernel:connect_node(N)} end)}
             || N <- Want, not maps:is_key(N, Dialing)]),
    S#st{dialing = maps:merge(Dialing, New)}.

rebuild(S = #st{ring = {Old, _}}) ->
    case lists:usort([node() | maps:keys(S#st.members)]) of
        Old -> S;
        New -> S#st{ring = ring_of(New)}
    end.

now_ms() -> erlang:monotonic_time(millisecond).

to_bin(B) when is_binary(B) -> B;
to_bin(A) when is_atom(A) -> atom_to_binary(A, utf8);
to_bin(L) when is_list(L) ->
    case unicode:characters_to_binary(L) of
        B when is_binary(B) -> B;
        _ -> error
    end;
to_bin(_) -> error.
