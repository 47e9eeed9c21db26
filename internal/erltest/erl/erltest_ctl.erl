%% erltest_ctl: lets a Go test drive an erl/elixir node through stdio.
%%
%% Started with `-s erltest_ctl start` (or `:erltest_ctl.start()` from
%% elixir). Prints "\x01READY Node OtpRelease" once registered, then reads
%% requests "Id Expr" line by line from stdin. Every request is evaluated in
%% its own process, so a blocking expression does not stall the others; the
%% answer is "\x01R Id ok Term" or "\x01R Id error Class:Reason", the term
%% written with ~tw (exact, no pretty-printing). End of input halts the node.
-module(erltest_ctl).
-export([start/0, set/2, get/1, recv/1, recv/2]).

start() ->
    Parent = self(),
    Pid = spawn(fun() -> init(Parent) end),
    receive {Pid, ready} -> ok after 10000 -> erlang:halt(3) end.

%% set/2 and get/1 keep values (pids, refs) between requests.
set(Key, Value) -> true = ets:insert(erltest_ctl_kv, {Key, Value}), Value.
get(Key) ->
    case ets:lookup(erltest_ctl_kv, Key) of
        [{_, V}] -> V;
        [] -> error({no_such_key, Key})
    end.

%% recv/1,2 is a receive for the process registered as Name by a request
%% (e.g. register(Name, self()), then recv(Name)): the first message or
%% timeout.
recv(Timeout) -> recv(any, Timeout).
recv(_Name, Timeout) ->
    receive M -> M after Timeout -> timeout end.

init(Parent) ->
    register(erltest_ctl, self()),
    ets:new(erltest_ctl_kv, [named_table, public, set]),
    ok = io:setopts(standard_io, [{encoding, unicode}]),
    out(["READY ", atom_to_list(node()), " ", erlang:system_info(otp_release)]),
    Parent ! {self(), ready},
    loop().

loop() ->
    case io:get_line(standard_io, "") of
        eof -> erlang:halt(0);
        {error, _} -> erlang:halt(0);
        Line ->
            %% elixir puts stdio in binary mode; erl_scan wants a list
            Chars = unicode:characters_to_list(Line),
            {Id, Expr} = split(string:trim(Chars, trailing, "\r\n")),
            spawn(fun() -> answer(Id, Expr) end),
            loop()
    end.

split(Line) ->
    case string:split(Line, " ") of
        [Id, Expr] -> {Id, Expr};
        [Id] -> {Id, ""}
    end.

answer(Id, Expr) ->
    Reply = try
                {ok, Tokens, _} = erl_scan:string(Expr),
                {ok, Exprs} = erl_parse:parse_exprs(Tokens),
                {value, V, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()),
                [" ok ", io_lib:format("~tw", [V])]
            catch
                Class:Reason ->
                    [" error ", io_lib:format("~tw:~tw", [Class, Reason])]
            end,
    out(["R ", Id, Reply]).

out(Chars) ->
    io:put_chars(standard_io, [1, Chars, $\n]).
