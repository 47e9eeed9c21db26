# A model of an Elixir cloister 0.16 node's process tree, for the interop
# tests: ours, written from the documented behaviour, no cloister code.
#
#   Cloister.Manager (Supervisor, rest_for_one; Elixir's default 3 restarts
#   in 5 s), children in the original's order:
#     Cloister.Monitor   cloister_member's Monitor (state answer, libring owners)
#     Cloister           an empty DynamicSupervisor
#     Cloister.Node      `use GenServer` and nothing else: a call or a cast
#                        crashes it with Elixir's own default clauses
#     Void               the "additional module" (cloister_member's Void)
#
# CloisterModel.multiapply/4 is what the original's Cloister.multiapply
# does (an rpc of M.F(A) on every node); whois/1 is the libring owner.

defmodule Cloister.Node do
  @moduledoc false
  # as inert as the original: no handle_call/handle_cast of its own
  use GenServer

  def start_link(_), do: GenServer.start_link(__MODULE__, :ok, name: __MODULE__)

  @impl true
  def init(:ok) do
    :ets.update_counter(:cloister_model, :node_starts, 1)
    {:ok, :ok}
  end
end

defmodule CloisterModel do
  @moduledoc false

  def start(app, sentries, opts) do
    {:ok, sup} = Supervisor.start_link(__MODULE__.Tree, {app, sentries, opts}, name: Cloister.Manager)
    Process.unlink(sup)
    {:ok, Process.whereis(Cloister.Monitor)}
  end

  def node_starts, do: :ets.lookup_element(:cloister_model, :node_starts, 2)

  def multiapply(nodes, m, f, a), do: :rpc.multicall(nodes, m, f, a)

  def whois(key), do: :cloister_member.owner(key)

  # BEAM functions a Go Multiapply runs
  def echo(x), do: {:echoed, node(), x}
  def raise(class, reason), do: apply(:erlang, class, [reason])
  def boom(text), do: raise(text)
  def missing_key(key), do: Keyword.fetch!([], key)

  defmodule Tree do
    @moduledoc false
    use Supervisor

    @impl true
    def init({app, sentries, opts}) do
      :ets.new(:cloister_model, [:named_table, :public])
      :ets.insert(:cloister_model, {:node_starts, 0})

      children = [
        %{id: Cloister.Monitor, start: {:cloister_member, :start_monitor, [app, sentries, opts]}},
        {DynamicSupervisor, name: Cloister, strategy: :one_for_one},
        Cloister.Node,
        %{id: Void, start: {:cloister_member, :start_void, []}}
      ]

      Supervisor.init(children, strategy: :rest_for_one)
    end
  end
end
