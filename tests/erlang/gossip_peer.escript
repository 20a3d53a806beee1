#!/usr/bin/env escript
%% The project's own stand-in for a libcluster node in the gossip tests. It writes and reads
%% libcluster's heartbeat with Erlang's own term_to_binary and crypto, exactly as
%% libcluster's Gossip strategy does (reference/libcluster.md §3).
%%
%%   gossip_peer.escript send PORT NODE [SECRET]
%%       multicasts heartbeats for NODE to 233.252.1.32:PORT on loopback, every 100 ms
%%   gossip_peer.escript recv PORT EXPECTED [SECRET]
%%       listens on 127.0.0.1:PORT and prints the node of the first heartbeat it can decode
%%       with binary_to_term(_, [safe]), then exits; "timeout" after 30 s
-mode(compile).

main(["send", Port, Node | Secret]) ->
    {ok, S} = gen_udp:open(0, [binary, {multicast_if, {127, 0, 0, 1}},
                               {multicast_ttl, 1}, {multicast_loop, true}]),
    Beat = fun() ->
        encode(["heartbeat::", term_to_binary(#{node => list_to_atom(Node)})], Secret)
    end,
    [begin
         ok = gen_udp:send(S, {233, 252, 1, 32}, list_to_integer(Port), Beat()),
         timer:sleep(100)
     end || _ <- lists:seq(1, 300)],
    ok;
main(["recv", Port, Expected | Secret]) ->
    %% binary_to_term(_, [safe]) refuses atoms the VM has not seen: make this one exist.
    _ = list_to_atom(Expected),
    {ok, S} = gen_udp:open(list_to_integer(Port),
                           [binary, {active, false}, {ip, {127, 0, 0, 1}}]),
    io:format("listening~n"),
    recv_loop(S, Secret, erlang:monotonic_time(millisecond) + 30000).

encode(IoData, []) ->
    IoData;
encode(IoData, [Secret]) ->
    Key = crypto:hash(sha256, Secret),
    IV = crypto:strong_rand_bytes(16),
    Plain = iolist_to_binary(IoData),
    Pad = 16 - (byte_size(Plain) rem 16),
    Padded = <<Plain/binary, (binary:copy(<<Pad>>, Pad))/binary>>,
    [IV, crypto:crypto_one_time(aes_256_cbc, Key, IV, Padded, true)].

recv_loop(S, Secret, Deadline) ->
    Left = Deadline - erlang:monotonic_time(millisecond),
    case Left > 0 andalso gen_udp:recv(S, 0, Left) of
        {ok, {_, _, Packet}} ->
            case decode(Packet, Secret) of
                {ok, Node} -> io:format("~s~n", [Node]), halt(0);
                error -> recv_loop(S, Secret, Deadline)
            end;
        _ ->
            io:format("timeout~n"),
            halt(1)
    end.

decode(<<"heartbeat::", Term/binary>>, []) ->
    node_of(Term);
decode(<<IV:16/binary, CT/binary>>, [Secret]) when CT =/= <<>>, byte_size(CT) rem 16 =:= 0 ->
    Key = crypto:hash(sha256, Secret),
    Padded = crypto:crypto_one_time(aes_256_cbc, Key, IV, CT, false),
    Pad = binary:last(Padded),
    case Pad >= 1 andalso Pad =< 16 of
        true ->
            case binary:part(Padded, 0, byte_size(Padded) - Pad) of
                <<"heartbeat::", Term/binary>> -> node_of(Term);
                _ -> error
            end;
        false ->
            error
    end;
decode(_, _) ->
    error.

node_of(Term) ->
    try binary_to_term(Term, [safe]) of
        #{node := Node} when is_atom(Node) -> {ok, atom_to_list(Node)};
        _ -> error
    catch
        error:badarg -> error
    end.
