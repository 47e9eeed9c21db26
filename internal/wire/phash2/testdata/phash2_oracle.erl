%% Test oracle for package phash2 (ours; run by erl_test.go).
%%
%% main([In, Out]): In holds 1-tuples {T} in the external term format,
%% each preceded by its length as a 32-bit big-endian integer. For every term,
%% one line is written to Out:
%%   phash2(T, 4294967295) phash2(T) phash2(T, 4294967296) ~w-of-T
-module(phash2_oracle).
-export([main/1]).

main([In, Out]) ->
    try
        {ok, Bin} = file:read_file(In),
        ok = file:write_file(Out, lines(Bin, [])),
        halt(0)
    catch Class:Reason:Stack ->
        io:format(standard_error, "phash2_oracle: ~p:~p ~p~n", [Class, Reason, Stack]),
        halt(2)
    end.

lines(<<>>, Acc) ->
    lists:reverse(Acc);
lines(<<Len:32, Ext:Len/binary, Rest/binary>>, Acc) ->
    {T} = binary_to_term(Ext),
    Line = io_lib:format("~b ~b ~b ~w~n",
                         [erlang:phash2(T, 4294967295), erlang:phash2(T),
                          erlang:phash2(T, 4294967296), T]),
    lines(Rest, [unicode:characters_to_binary(Line) | Acc]).
